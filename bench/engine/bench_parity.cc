// bench_parity: how far the CUDA backend's logits are from the exact fp32 CPU engine on a
// random-weight model of a released shape, per weight precision (docs/CUDA.md, "8-bit
// weights"). A prompt, then `--steps` decode steps teacher-forced by the CPU's greedy
// token (so both see the same tokens); per step the relative L2 error of the logits and
// whether the top-1 tokens agree; also the GPU's own free-running greedy tokens against
// the CPU's (the length of the identical prefix). Prints a table, writes JSON.
// Usage: bench_parity [--shape 0.2b|3.6b|tiny] [--weights fp16,fp8,int8] [--steps 256]
//                     [--prompt 32] [--vocab N] [--json out.json]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/engine/bench_shapes.h"
#include "engine/backend.h"
#include "engine/model.h"

namespace rwkvx {
namespace {

int Argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

double RelL2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

double Margin(const std::vector<float>& v) {  // top-1 minus top-2
  std::vector<float> s(v);
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
  return s[0] - s[1];
}

struct Row {
  std::string weights;
  double weights_gib = 0, mean_rel = 0, max_rel = 0;
  int steps = 0, agree = 0, clear = 0, agree_clear = 0, free_prefix = 0;
};

}  // namespace
}  // namespace rwkvx

int main(int argc, char** argv) {
  using namespace rwkvx;
  std::string shape = "0.2b", weights = "fp16,fp8,int8", json;
  int steps = 256, prompt = 32, vocab = 0;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h" || i + 1 >= argc) {
      std::printf("usage: bench_parity [--shape 0.2b|3.6b|tiny] [--weights fp16,bf16,fp8,int8] [--steps 256] [--prompt 32] "
                  "[--vocab N] [--json out.json]\n");
      return k == "--help" || k == "-h" ? 0 : 2;
    }
    const char* v = argv[i + 1];
    if (k == "--shape") shape = v;
    else if (k == "--weights") weights = v;
    else if (k == "--steps") steps = std::max(1, std::atoi(v));
    else if (k == "--prompt") prompt = std::max(1, std::atoi(v));
    else if (k == "--vocab") vocab = std::atoi(v);
    else if (k == "--json") json = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  if (const std::string why = CudaUnavailableReason(); !why.empty()) {
    std::printf("bench_parity: no GPU: %s\n", why.c_str());
    return 0;
  }
  ModelShape s = BenchShape(shape);
  if (vocab > 0) s.vocab = vocab;
  auto model = MakeRandomModel(s, 1234, shape);
  const int V = s.vocab;
  std::vector<int32_t> toks(prompt);
  for (int i = 0; i < prompt; ++i) toks[i] = static_cast<int32_t>((i * 2654435761u) % V);

  // The CPU reference once: its logits at every step (greedy, fed back).
  auto cpu = MakeCpuBackend(model);
  auto sc = *cpu->CreateSession();
  std::vector<std::vector<float>> ref;
  std::vector<int32_t> feed;  // the CPU's greedy tokens
  std::vector<float> l;
  if (auto st = cpu->Step({{sc, toks, true}}, &l); !st.ok()) { std::printf("cpu: %s\n", st.ToString().c_str()); return 1; }
  for (int i = 0; i <= steps; ++i) {
    ref.push_back(l);
    feed.push_back(Argmax(l));
    if (i == steps) break;
    if (auto st = cpu->Step({{sc, {feed.back()}, true}}, &l); !st.ok()) return 1;
  }
  std::printf("model %s: C=%d R=%d M=%d V=%d; CPU fp32 reference: prompt %d + %d steps\n", shape.c_str(), s.n_embd,
              s.n_rwkv_layer, s.n_attn_layer, V, prompt, steps);

  std::vector<Row> rows;
  std::stringstream ws(weights);
  for (std::string w; std::getline(ws, w, ',');) {
    if (w != "fp16" && w != "bf16" && w != "fp8" && w != "int8") {
      std::fprintf(stderr, "--weights: a comma-separated list of fp16, bf16, fp8, int8 (not '%s')\n", w.c_str());
      return 2;
    }
    CudaBackendOptions o;
    o.bf16 = w == "bf16";
    o.fp8_weights = w == "fp8";
    o.int8_weights = w == "int8";
    auto gb = MakeCudaBackend(model, o);
    if (!gb.ok()) { std::printf("%s: %s\n", w.c_str(), gb.status().ToString().c_str()); return 1; }
    Backend& g = **gb;
    Row r;
    r.weights = w;
    r.weights_gib = g.Memory().weights_bytes / 1073741824.0;
    auto forced = *g.CreateSession(), free = *g.CreateSession();
    std::vector<float> lf, lr;
    if (!g.Step({{forced, toks, true}}, &lf).ok() || !g.Step({{free, toks, true}}, &lr).ok()) return 1;
    bool same = true;
    double sum = 0;
    for (int i = 0; i <= steps; ++i) {
      const double rel = RelL2(lf, ref[i]);
      sum += rel;
      r.max_rel = std::max(r.max_rel, rel);
      const bool agree = Argmax(lf) == feed[i];
      r.agree += agree;
      // Clear margin: the CPU's top-1 leads by more than 4x the largest logit error.
      double max_abs = 0;
      for (size_t k = 0; k < lf.size(); ++k) max_abs = std::max(max_abs, std::abs(double(lf[k]) - ref[i][k]));
      if (Margin(ref[i]) > 4 * max_abs) { ++r.clear; r.agree_clear += agree; }
      const int own = Argmax(lr);
      same = same && own == feed[i];
      r.free_prefix += same;
      ++r.steps;
      if (i == steps) break;
      if (!g.Step({{forced, {feed[i]}, true}}, &lf).ok() || !g.Step({{free, {own}, true}}, &lr).ok()) return 1;
    }
    r.mean_rel = sum / r.steps;
    rows.push_back(r);
  }
  std::printf("%-8s %10s %12s %12s %14s %16s %18s\n", "weights", "GiB", "mean rel-L2", "max rel-L2", "top-1 agree",
              "clear-margin", "free-run greedy");
  std::ostringstream js;
  js << "{\"shape\":\"" << shape << "\",\"vocab\":" << V << ",\"prompt\":" << prompt << ",\"steps\":" << steps << ",\"rows\":[";
  for (size_t k = 0; k < rows.size(); ++k) {
    const Row& r = rows[k];
    std::printf("%-8s %10.3f %12.3e %12.3e %9d/%-4d %11d/%-4d %13d/%-4d\n", r.weights.c_str(), r.weights_gib, r.mean_rel,
                r.max_rel, r.agree, r.steps, r.agree_clear, r.clear, r.free_prefix, r.steps);
    js << (k ? "," : "") << "{\"weights\":\"" << r.weights << "\",\"weights_gib\":" << r.weights_gib
       << ",\"mean_rel_l2\":" << r.mean_rel << ",\"max_rel_l2\":" << r.max_rel << ",\"top1_agree\":" << r.agree
       << ",\"clear_steps\":" << r.clear << ",\"clear_agree\":" << r.agree_clear << ",\"free_run_identical\":" << r.free_prefix
       << ",\"steps\":" << r.steps << "}";
  }
  js << "]}\n";
  if (!json.empty()) std::ofstream(json) << js.str();
  return 0;
}
