// bench_cpu: CPU-engine throughput on one model: memory copy bandwidth of this machine,
// one-session decode, batched decode (8 sessions), prefill. Prints a table and writes
// JSON (--json). Medians of repeated steps (a shared VM is bursty). Timing only; never asserts. bench/cpu/run.py compares with the package.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/cpu/blas_setup.h"
#include "engine/cpu/ops.h"
#include "engine/model.h"
#include "tools/cli_args.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Median seconds of `n` calls of fn(i): robust to the bursts of a shared VM.
template <typename F>
double MedianSeconds(int n, F fn) {
  std::vector<double> t(n);
  for (int i = 0; i < n; ++i) {
    auto a = Clock::now();
    fn(i);
    t[i] = Seconds(a, Clock::now());
  }
  std::nth_element(t.begin(), t.begin() + n / 2, t.end());
  return t[n / 2];
}

// Copy bandwidth: bytes read + bytes written per second over a buffer far above cache.
double CopyBandwidthGBs() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), n);
    auto t1 = Clock::now();
    best = std::max(best, 2.0 * n / Seconds(t0, t1) / 1e9);
    std::swap(a, b);
  }
  return best;
}

size_t DecodeWeightBytes(const rwkvx::Model& m) {
  // Bytes every decode token must read: all matrices except the embedding table, which is
  // read one row at a time.
  size_t n = m.head.size() + m.ln_out_w.size() * 2;
  for (int b : m.order) {
    if (b >= 0) {
      const auto& w = m.rwkv[b];
      n += w.Wr.size() * 4 + w.ffn_key.size() + w.ffn_value.size() + w.w1.size() + w.w2.size() +
           w.a1.size() + w.a2.size() + w.v1.size() + w.v2.size() + w.g1.size() + w.g2.size();
    } else {
      const auto& w = m.attn_blocks[-b - 1];
      n += w.Wq.size() * 4 + w.ffn_key.size() + w.ffn_value.size();
    }
  }
  return n * sizeof(float);
}

}  // namespace

int main(int argc, char** argv) {
  rwkvx::cpu::MaybeReexecWithFasterBlas(argv);
  auto args = rwkvx::CliArgs::Parse(argc, argv, {"model", "json", "decode-steps", "prefill", "batch", "threads"});
  if (!args.ok() || !args->Has("model")) {
    std::fprintf(stderr, "usage: bench_cpu --model M.pth [--json out.json] [--decode-steps 32] [--prefill 512] [--batch 8] [--threads N]\n");
    return 2;
  }
  auto model = rwkvx::LoadModelFile(args->Get("model"));
  if (!model.ok()) {
    std::fprintf(stderr, "bench_cpu: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  (*model)->attn.max_kv_cache_size = 0;
  const int steps = *args->GetInt("decode-steps", 32, 1, 100000);
  const int prefill = *args->GetInt("prefill", 512, 2, 1 << 20);
  const int batch = *args->GetInt("batch", 8, 1, 4096);
  rwkvx::CpuBackendOptions opts;
  opts.threads = static_cast<int>(*args->GetInt("threads", 0, 0, 1024));
  auto be = rwkvx::MakeCpuBackend(*model, opts);
  const int V = (*model)->shape.vocab;
  std::vector<float> logits;

  const double bw = CopyBandwidthGBs();
  // Prefill.
  std::vector<int32_t> toks(prefill);
  for (int i = 0; i < prefill; ++i) toks[i] = (i * 7919 + 13) % V;
  const double prefill_tps = prefill / MedianSeconds(3, [&](int) {
    auto s = *be->CreateSession();
    (void)be->Step({{s, toks, true}}, &logits);
    (void)be->FreeSession(s);
  });
  auto s0 = *be->CreateSession();
  (void)be->Step({{s0, {1, 2, 3}, true}}, &logits);
  // One-session decode (median step).
  (void)be->Step({{s0, {1}, true}}, &logits);  // warm-up
  const double dec1 = MedianSeconds(steps, [&](int i) { (void)be->Step({{s0, {(i * 31 + 7) % V}, true}}, &logits); });
  // Batched decode.
  std::vector<rwkvx::StepInput> items;
  for (int b = 0; b < batch; ++b) {
    auto s = *be->CreateSession();
    (void)be->Step({{s, {1, 2, 3, 4}, false}}, &logits);
    items.push_back({s, {b % V}, true});
  }
  (void)be->Step(items, &logits);
  const double decb = MedianSeconds(steps, [&](int i) {
    for (auto& it : items) it.tokens[0] = (it.tokens[0] * 31 + i) % V;
    (void)be->Step(items, &logits);
  });
  // One-session decode with fp16 weights (half the bytes).
  double dec1h = 0;
  {
    rwkvx::CpuBackendOptions ho = opts;
    ho.half_weights = true;
    auto hb = rwkvx::MakeCpuBackend(*model, ho);
    auto hs = *hb->CreateSession();
    (void)hb->Step({{hs, {1, 2, 3}, true}}, &logits);
    dec1h = MedianSeconds(steps, [&](int i) { (void)hb->Step({{hs, {(i * 31 + 7) % V}, true}}, &logits); });
  }
  const double bytes = DecodeWeightBytes(**model);
  const double achieved = bytes / dec1 / 1e9;

  std::printf("| metric | value |\n|---|---|\n");
  std::printf("| OpenBLAS core | %s |\n", rwkvx::cpu::BlasCoreName().c_str());
  std::printf("| copy bandwidth (read+write) | %.1f GB/s |\n", bw);
  std::printf("| decode, 1 session | %.2f ms/token (%.1f tok/s) |\n", dec1 * 1e3, 1 / dec1);
  std::printf("| weight bytes read per decode token | %.1f MB |\n", bytes / 1e6);
  std::printf("| achieved weight-read bandwidth | %.1f GB/s (%.0f%% of copy) |\n", achieved, 100 * achieved / bw);
  std::printf("| decode, 1 session, fp16 weights | %.2f ms/token (%.1f tok/s; %.1f GB/s) |\n", dec1h * 1e3,
              1 / dec1h, bytes / 2 / dec1h / 1e9);
  std::printf("| decode, %d sessions | %.2f ms/step (%.1f tok/s) |\n", batch, decb * 1e3, batch / decb);
  std::printf("| prefill %d tokens | %.1f tok/s |\n", prefill, prefill_tps);
  if (args->Has("json")) {
    nlohmann::json j = {{"copy_bandwidth_gbs", bw}, {"decode1_ms", dec1 * 1e3}, {"decode1_tps", 1 / dec1},
                        {"decode_batch", batch}, {"decode1_fp16w_ms", dec1h * 1e3}, {"decode1_fp16w_gbs", bytes / 2 / dec1h / 1e9}, {"decodeB_tps", batch / decb}, {"prefill_tokens", prefill},
                        {"prefill_tps", prefill_tps}, {"weight_bytes_per_token", bytes},
                        {"achieved_gbs", achieved}, {"threads", rwkvx::cpu::NumThreads()}, {"blas_core", rwkvx::cpu::BlasCoreName()}};
    std::ofstream(args->Get("json")) << j.dump(2) << "\n";
  }
  return 0;
}
