// bench_engine: measures the CUDA backend on random-weight RWKV-X models of the released
// shapes. Usage: bench_engine --help (kUsage, bench/engine/bench_args.h).
// Never asserts on timings. Each Step returns after its logits are on the host, so a wall
// clock around Step is the end-to-end step latency.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include "engine/backend.h"
#include "bench/engine/bench_args.h"
#include "bench/engine/bench_shapes.h"
#include "engine/model.h"

namespace rwkvx {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

std::vector<int32_t> Tokens(int n, int V, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    t[i] = static_cast<int32_t>((seed >> 8) % V);
  }
  return t;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Prefills `n` tokens into session s in chunks (no logits).
bool Fill(Backend& b, SessionId s, int n, int chunk, int V, uint32_t seed) {
  std::vector<float> l;
  for (int done = 0; done < n;) {
    const int t = std::min(chunk, n - done);
    auto st = b.Step({{s, Tokens(t, V, seed + done), false}}, &l);
    if (!st.ok()) {
      std::fprintf(stderr, "fill failed: %s\n", std::string(st.message()).c_str());
      return false;
    }
    done += t;
  }
  return true;
}

// Sampling specs for the sampled passes: temperature 1, top-p `top_p` (--sample-top-p,
// default 0.9, which runs the radix rounds; the server's default request, temperature 1
// and no top-p, is --sample-top-p 1), a different draw per session.
std::vector<DeviceSampling> ServerLikeSpecs(int n, double top_p) {
  std::vector<DeviceSampling> specs(static_cast<size_t>(n));
  for (size_t k = 0; k < specs.size(); ++k) {  // size_t: the batched table's draws as before
    specs[k].temperature = 1.0f;
    specs[k].top_p = static_cast<float>(top_p);
    specs[k].uniform = static_cast<double>((k * 2654435761u) % 1000) / 1000.0;
  }
  return specs;
}

}  // namespace
}  // namespace rwkvx

int main(int argc, char** argv) {
  using namespace rwkvx;
  Args a;
  if (const int rc = ParseArgs(argc, argv, &a); rc >= 0) return rc;
  if (const std::string why = CudaUnavailableReason(); !why.empty()) {
    std::printf("bench_engine: no GPU: %s\n", why.c_str());
    return 0;
  }
  const ModelShape s = BenchShape(a.shape);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("card: %s (%d SMs, %.1f GiB)\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
  // The floor column's bandwidth: the card's peak (DDR: two transfers a clock) unless given.
  int mem_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  const double queried_tbps = mem_khz * 1e3 * bus_bits * 2 / 8 / 1e12;
  const bool hbm_given = a.hbm_tbps > 0;
  const double hbm = (hbm_given ? a.hbm_tbps : queried_tbps) * 1e12;  // bytes/s
  std::printf("memory bandwidth for the floor column: %.2f TB/s (%s; the card reports %d MHz x %d bits x 2 = %.2f TB/s)\n",
              hbm / 1e12, hbm_given ? "--hbm-tbps" : "queried", mem_khz / 1000, bus_bits, queried_tbps);
  auto t0 = Clock::now();
  auto model = MakeRandomModel(s, 1234, a.shape);
  auto t1 = Clock::now();
  const CudaBackendOptions o = OptionsOf(a);
  auto be = MakeCudaBackend(model, o);
  if (!be.ok()) { std::printf("MakeCudaBackend: %s\n", std::string(be.status().message()).c_str()); return 1; }
  Backend& b = **be;
  std::printf("model %s: C=%d R=%d M=%d V=%d, weights %.2f GiB on GPU (%s); random init %.1f s, upload %.1f s\n",
              a.shape.c_str(), s.n_embd, s.n_rwkv_layer, s.n_attn_layer, s.vocab, b.Memory().weights_bytes / 1073741824.0, a.weights.c_str(),
              Ms(t0, t1) / 1000, Ms(t1, Clock::now()) / 1000);
  std::printf("attention: chunk %d, top-k %d, threshold %d, max_kv %d (window %d, min %d)\n", model->attn.chunk_size,
              model->attn.topk, model->attn.Threshold(), model->attn.max_kv_cache_size, model->attn.kv_cache_window_size,
              model->attn.min_kv_cache_size);
  std::ostringstream js;
  js << "{\"card\":\"" << prop.name << "\",\"shape\":\"" << a.shape << "\",\"weights\":\"" << a.weights << "\",\"weights_bytes\":" << b.Memory().weights_bytes
     << ",\"skinny_mma\":" << a.skinny_mma << ",\"batch_invariant\":" << a.batch_invariant
     << ",\"fold_ln\":" << a.fold_ln << ",\"wkv_rows\":" << OptionsOf(a).wkv_rows << ",\"wkv_matrix\":" << OptionsOf(a).wkv_matrix
     << ",\"sample_splits\":" << a.sample_splits << ",\"sample_top_p\":" << a.sample_top_p
     << ",\"sample_penalties\":" << a.sample_penalties << ",\"gemv_prefetch\":" << a.gemv_prefetch << ",\"gemv_split\":" << a.gemv_split
     << ",\"fused_append\":" << a.fused_append << ",\"fused_select\":" << a.fused_select
     << ",\"pinned_logits_mb\":" << a.pinned_logits_mb << ",\"fused_norm_shift\":" << a.fused_norm_shift;
  const int V = s.vocab;
  std::vector<float> l;

  // Warm-up (cuBLAS heuristics, pools).
  {
    auto w = *b.CreateSession();
    Fill(b, w, 2048, 2048, V, 1);
    for (int i = 0; i < 4; ++i) b.Step({{w, {1}, true}}, &l).IgnoreError();
    b.FreeSession(w).IgnoreError();
  }

  // Profiling hook: one prefill step of T tokens in cudaProfilerStart/Stop (ncu --profile-from-start off), then exit.
  if (const char* pt = std::getenv("RWKVX_PROFILE_PREFILL")) {
    auto id = *b.CreateSession();
    auto toks = Tokens(std::atoi(pt), V, 3);
    b.Step({{id, toks, true}}, &l).IgnoreError();  // same shapes once, unprofiled
    auto id2 = *b.CreateSession();
    cudaProfilerStart();
    b.Step({{id2, toks, true}}, &l).IgnoreError();
    cudaProfilerStop();
    return 0;
  }
  // Same for one decode step (one session at the given context; --cuda-graphs 0 to see each
  // kernel). RWKVX_PROFILE_BATCH=B: the step is B sessions at that context (default 1K),
  // each sampled on the GPU (temperature 1, top-p --sample-top-p: the server's path).
  if (const char* pb = std::getenv("RWKVX_PROFILE_BATCH")) {
    const int B = std::max(1, std::atoi(pb));
    const char* pc = std::getenv("RWKVX_PROFILE_DECODE");
    const int ctx = pc ? std::max(1, std::atoi(pc)) : 1024;
    std::vector<SessionId> ids;
    for (int i = 0; i < B; ++i) ids.push_back(*b.CreateSession());
    const int per = std::max(1, 65536 / ctx);
    for (int i = 0; i < B; i += per) {
      std::vector<StepInput> in;
      for (int k = i; k < std::min(B, i + per); ++k) in.push_back({ids[k], Tokens(ctx, V, k), false});
      if (auto st = b.Step(in, &l); !st.ok()) { std::printf("fill: %s\n", std::string(st.message()).c_str()); return 1; }
    }
    std::vector<DeviceSampling> specs = ServerLikeSpecs(B, a.sample_top_p);
    std::vector<SampledToken> drawn;
    for (int i = 0; i < 4; ++i) {
      std::vector<StepInput> in;
      for (int k = 0; k < B; ++k) {
        in.push_back({ids[k], {static_cast<int32_t>((k * 7 + i) % V)}, true});
        in.back().sample = &specs[k];
      }
      if (i == 3) cudaProfilerStart();
      auto st = b.StepSampled(in, &l, &drawn);
      if (i == 3) cudaProfilerStop();
      if (!st.ok()) { std::printf("step: %s\n", std::string(st.message()).c_str()); return 1; }
    }
    return 0;
  }
  // RWKVX_PROFILE_MIXED=D,P,T: a mixed step as the server runs it when new requests join:
  // D sessions decoding (at RWKVX_PROFILE_DECODE context, default 128) beside P new
  // sessions feeding T-token prompts, every item sampled on the GPU (temperature 1,
  // top-p 0.9). Five such steps are timed (printed: median ms, with a pure decode step
  // of the D sessions for comparison); the sixth runs between cudaProfilerStart/Stop.
  if (const char* pm = std::getenv("RWKVX_PROFILE_MIXED")) {
    int D = 192, P = 64, T = 17;
    std::sscanf(pm, "%d,%d,%d", &D, &P, &T);
    const char* pc = std::getenv("RWKVX_PROFILE_DECODE");
    const int ctx = pc ? std::max(1, std::atoi(pc)) : 128;
    std::vector<SessionId> dec;
    for (int i = 0; i < D; ++i) {
      dec.push_back(*b.CreateSession());
      if (!Fill(b, dec.back(), ctx, a.fill_chunk, V, 50 + i)) return 1;
    }
    std::vector<DeviceSampling> specs = ServerLikeSpecs(D + P, a.sample_top_p);
    std::vector<SampledToken> drawn;
    std::vector<double> mixed_ms, decode_ms;
    for (int rep = 0; rep < 6; ++rep) {
      std::vector<StepInput> in;
      for (int k = 0; k < D; ++k) {
        in.push_back({dec[k], {static_cast<int32_t>((k * 7 + rep) % V)}, true});
        in.back().sample = &specs[k];
      }
      if (rep < 5) {  // the decode step alone (graph replay after the first)
        auto c0 = Clock::now();
        if (auto st = b.StepSampled(in, &l, &drawn); !st.ok()) { std::printf("decode: %s\n", std::string(st.message()).c_str()); return 1; }
        decode_ms.push_back(Ms(c0, Clock::now()));
        for (auto& x : in) x.tokens[0] = (x.tokens[0] + 1) % V;
      }
      std::vector<SessionId> fresh;
      for (int k = 0; k < P; ++k) {
        fresh.push_back(*b.CreateSession());
        in.push_back({fresh.back(), Tokens(T, V, 900 + rep * P + k), true});
        in.back().sample = &specs[D + k];
      }
      if (rep == 5) cudaProfilerStart();
      auto c0 = Clock::now();
      auto st = b.StepSampled(in, &l, &drawn);
      const double ms = Ms(c0, Clock::now());
      if (rep == 5) cudaProfilerStop();
      if (!st.ok()) { std::printf("mixed: %s\n", std::string(st.message()).c_str()); return 1; }
      if (rep < 5) mixed_ms.push_back(ms);
      for (SessionId f : fresh) b.FreeSession(f).IgnoreError();
    }
    std::printf("mixed step: %d decoding (ctx %d) + %d new x %d tokens: %.3f ms (median of 5); "
                "the decode step alone %.3f ms\n", D, ctx, P, T, Median(mixed_ms), Median(decode_ms));
    return 0;
  }
  if (const char* pc = std::getenv("RWKVX_PROFILE_DECODE")) {
    auto id = *b.CreateSession();
    Fill(b, id, std::atoi(pc), a.fill_chunk, V, 3);
    for (int i = 0; i < 3; ++i) b.Step({{id, {1}, true}}, &l).IgnoreError();
    cudaProfilerStart();
    b.Step({{id, {2}, true}}, &l).IgnoreError();
    cudaProfilerStop();
    return 0;
  }

  // 1. Single-session decode latency by context.
  // ms/token: the logits row comes to the host; sampled: greedy on the GPU (the server's
  // path), only the token id comes back.
  std::printf("\n%-28s %12s %12s %12s %14s %10s\n", "decode, 1 session", "ms/token", "p90 ms", "sampled ms",
              "session MiB", "kv rows");
  js << ",\"decode\":[";
  bool first = true;
  for (int ctx : a.decode_ctx) {
    auto id = b.CreateSession();
    if (!id.ok()) break;
    auto tf = Clock::now();
    if (!Fill(b, *id, ctx, a.fill_chunk, V, 7)) { b.FreeSession(*id).IgnoreError(); continue; }
    const double fill_s = Ms(tf, Clock::now()) / 1000;
    std::vector<double> t;
    int32_t tok = 1;
    for (int i = 0; i < a.steps + 3; ++i) {
      auto c0 = Clock::now();
      auto st = b.Step({{*id, {tok}, true}}, &l);
      auto c1 = Clock::now();
      if (!st.ok()) { std::printf("decode failed: %s\n", std::string(st.message()).c_str()); break; }
      tok = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
      if (i >= 3) t.push_back(Ms(c0, c1));
    }
    std::vector<double> ts;
    DeviceSampling greedy;
    greedy.temperature = 0;
    std::vector<SampledToken> drawn;
    for (int i = 0; i < a.steps + 3; ++i) {
      StepInput in{*id, {tok}, true};
      in.sample = &greedy;
      auto c0 = Clock::now();
      auto st = b.StepSampled({in}, &l, &drawn);
      auto c1 = Clock::now();
      if (!st.ok()) { std::printf("sampled decode failed: %s\n", std::string(st.message()).c_str()); break; }
      tok = drawn[0].token;
      if (i >= 3) ts.push_back(Ms(c0, c1));
    }
    const double med_s = Median(ts);
    std::sort(t.begin(), t.end());
    const double med = Median(t), p90 = t.empty() ? 0 : t[t.size() * 9 / 10];
    const double mib = b.SessionBytes(*id) / 1048576.0;
    char label[64];
    std::snprintf(label, sizeof label, "ctx %d (fill %.1fs)", ctx, fill_s);
    std::printf("%-28s %12.3f %12.3f %12.3f %14.1f %10zu\n", label, med, p90, med_s, mib, b.SessionKvTokens(*id));
    js << (first ? "" : ",") << "{\"ctx\":" << ctx << ",\"ms_per_token\":" << med << ",\"p90_ms\":" << p90
       << ",\"ms_per_token_sampled\":" << med_s
       << ",\"session_bytes\":" << b.SessionBytes(*id) << ",\"kv_rows\":" << b.SessionKvTokens(*id)
       << ",\"fill_seconds\":" << fill_s << "}";
    first = false;
    std::fflush(stdout);
    b.FreeSession(*id).IgnoreError();
  }
  js << "]";

  // 2. Prefill throughput (one session, one step of T tokens, logits of the last row).
  std::printf("\n%-28s %12s %12s\n", "prefill, 1 session", "ms", "tokens/s");
  js << ",\"prefill\":[";
  first = true;
  for (int T : a.prefill) {
    std::vector<double> t;
    for (int rep = 0; rep < 3; ++rep) {
      auto id = b.CreateSession();
      if (!id.ok()) break;
      auto toks = Tokens(T, V, 100 + rep);
      auto c0 = Clock::now();
      auto st = b.Step({{*id, toks, true}}, &l);
      auto c1 = Clock::now();
      b.FreeSession(*id).IgnoreError();
      if (!st.ok()) { std::printf("prefill %d failed: %s\n", T, std::string(st.message()).c_str()); break; }
      t.push_back(Ms(c0, c1));
    }
    if (t.empty()) continue;
    const double med = Median(t);
    char label[64];
    std::snprintf(label, sizeof label, "T %d", T);
    std::printf("%-28s %12.2f %12.0f\n", label, med, T / (med / 1000));
    js << (first ? "" : ",") << "{\"tokens\":" << T << ",\"ms\":" << med << ",\"tokens_per_s\":" << T / (med / 1000) << "}";
    first = false;
    std::fflush(stdout);
  }
  js << "]";

  // 3. Batched decode throughput.
  // Four passes per shape: logits rows to the host; no logits at all; sampled on the GPU
  // (temperature 1, top-p 0.9 and 32 penalised tokens per session unless --sample-top-p /
  // --sample-penalties say otherwise; the server's path); the
  // same with a grammar mask per session (DeviceSampling::allowed, every other token).
  std::printf("\n%-28s %10s %12s %12s %12s %12s %12s %12s %12s\n", "batched decode", "ms/step", "tokens/s",
              "no-logits", "tok/s (nl)", "sampled", "tok/s (smp)", "masked", "GB/step");
  js << ",\"batch\":[";
  first = true;
  const double state_bytes = static_cast<double>(s.n_rwkv_layer) * s.n_head * 4096 * 4 * 2;  // read + write
  for (int ctx : a.batch_ctx) {
    for (int B : a.batch) {
      std::vector<SessionId> ids;
      bool ok = true;
      for (int i = 0; i < B && ok; ++i) {
        auto id = b.CreateSession();
        if (!id.ok()) { ok = false; break; }
        ids.push_back(*id);
      }
      // Fill all sessions with ctx tokens, several sessions per step (<= 64K rows a step).
      const int per = std::max(1, 65536 / ctx);
      for (size_t i = 0; ok && i < ids.size(); i += per) {
        std::vector<StepInput> in;
        for (size_t k = i; k < std::min(ids.size(), i + per); ++k) in.push_back({ids[k], Tokens(ctx, V, k), false});
        auto st = b.Step(in, &l);
        if (!st.ok()) { ok = false; std::printf("B=%d ctx=%d: %s\n", B, ctx, std::string(st.message()).c_str()); }
      }
      double ms = 0, ms_nl = 0, ms_smp = 0, ms_mask = 0;
      std::vector<DeviceSampling> specs = ServerLikeSpecs(static_cast<int>(ids.size()), a.sample_top_p), masked;
      for (size_t k = 0; k < specs.size(); ++k) {
        for (int j = 0; j < a.sample_penalties; ++j) specs[k].adjust.emplace_back(static_cast<int32_t>((k * 131 + j * 977) % V), 0.3f);
      }
      masked = specs;
      for (DeviceSampling& d : masked) d.allowed.assign((V + 31) / 32, 0x55555555u);
      std::vector<SampledToken> drawn;
      if (ok) {
        for (int pass = 0; pass < 4 && ok; ++pass) {
          std::vector<double> t;
          for (int i = 0; i < std::max(8, a.steps / 2) + 2; ++i) {
            std::vector<StepInput> in;
            for (size_t k = 0; k < ids.size(); ++k) {
              in.push_back({ids[k], {static_cast<int32_t>((k * 7 + i) % V)}, pass != 1});
              if (pass >= 2) in.back().sample = pass == 2 ? &specs[k] : &masked[k];
            }
            auto c0 = Clock::now();
            auto st = pass >= 2 ? b.StepSampled(in, &l, &drawn) : b.Step(in, &l);
            auto c1 = Clock::now();
            if (!st.ok()) { ok = false; std::printf("B=%d: %s\n", B, std::string(st.message()).c_str()); break; }
            if (i >= 2) t.push_back(Ms(c0, c1));
          }
          (pass == 0 ? ms : pass == 1 ? ms_nl : pass == 2 ? ms_smp : ms_mask) = Median(t);
        }
      }
      // Floor bytes per step: weights once, except the embedding table (float32 [V, C], of
      // which a step reads one row per token) + each session's embedding row, RWKV state read
      // and written and attended KV rows (min(ctx, threshold-ish) rows x C x k,v x fp16 x
      // sparse layers).
      const double kv_rows = std::min<double>(ctx + 1, model->attn.Threshold() + model->attn.chunk_size);
      const double emb_bytes = static_cast<double>(s.vocab) * s.n_embd * 4;
      const double bytes = b.Memory().weights_bytes - emb_bytes +
                           B * (s.n_embd * 4.0 + state_bytes + kv_rows * s.n_embd * 2 * 2 * s.n_attn_layer);
      char label[64];
      std::snprintf(label, sizeof label, "B %d, ctx %d", B, ctx);
      if (ok) {
        std::printf("%-28s %10.3f %12.0f %12.3f %12.0f %12.3f %12.0f %12.3f %12.3f  (HBM floor %.3f ms at %.2f TB/s = %.0f%%)\n",
                    label, ms, B / (ms / 1000), ms_nl, B / (ms_nl / 1000), ms_smp, B / (ms_smp / 1000), ms_mask, bytes / 1e9,
                    bytes / hbm * 1000, hbm / 1e12, 100.0 * (bytes / hbm * 1000) / ms_nl);
        js << (first ? "" : ",") << "{\"B\":" << B << ",\"ctx\":" << ctx << ",\"ms_per_step\":" << ms
           << ",\"tokens_per_s\":" << B / (ms / 1000) << ",\"ms_per_step_no_logits\":" << ms_nl
           << ",\"tokens_per_s_no_logits\":" << B / (ms_nl / 1000) << ",\"ms_per_step_sampled\":" << ms_smp
           << ",\"tokens_per_s_sampled\":" << B / (ms_smp / 1000) << ",\"ms_per_step_masked\":" << ms_mask
           << ",\"floor_bytes\":" << bytes
           << ",\"floor_bytes_per_s\":" << hbm << "}";
        first = false;
      } else {
        std::printf("%-28s %10s (did not fit: memory)\n", label, "n/a");
      }
      std::fflush(stdout);
      for (auto id : ids) b.FreeSession(id).IgnoreError();
    }
  }
  js << "]";

  // 4. Memory per session by context (compression on: flat past max_kv).
  std::printf("\n%-28s %14s %10s\n", "memory per session", "MiB", "kv rows");
  js << ",\"memory\":[";
  first = true;
  for (int ctx : a.mem_ctx) {
    auto id = b.CreateSession();
    if (!id.ok()) break;
    if (Fill(b, *id, ctx, a.fill_chunk, V, 9)) {
      b.Step({{*id, {1}, true}}, &l).IgnoreError();
      char label[64];
      std::snprintf(label, sizeof label, "ctx %d (+1 decode)", ctx);
      std::printf("%-28s %14.1f %10zu\n", label, b.SessionBytes(*id) / 1048576.0, b.SessionKvTokens(*id));
      js << (first ? "" : ",") << "{\"ctx\":" << ctx << ",\"session_bytes\":" << b.SessionBytes(*id)
         << ",\"kv_rows\":" << b.SessionKvTokens(*id) << "}";
      first = false;
    }
    b.FreeSession(*id).IgnoreError();
  }
  js << "]}";
  if (!a.json.empty()) {
    std::ofstream(a.json) << js.str() << "\n";
    std::printf("\nwrote %s\n", a.json.c_str());
  }
  return 0;
}
