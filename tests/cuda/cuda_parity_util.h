// Shared helpers of the CUDA-vs-CPU parity tests: the GPU backend's options, the logits
// comparison (relative L2, max |d|, top-1 margin), the bound and why, and a runner that
// feeds the same token stream to both backends. Test code only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {

inline CudaBackendOptions GpuOptions(double frac = 0.5, bool bf16 = false) {
  CudaBackendOptions o;
  o.gpu_memory_fraction = frac;
  o.bf16 = bf16;
  return o;
}

inline std::unique_ptr<Backend> Gpu(std::shared_ptr<const Model> m, const CudaBackendOptions& o) {
  auto b = MakeCudaBackend(std::move(m), o);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

inline std::unique_ptr<Backend> Gpu(std::shared_ptr<const Model> m, double frac = 0.5) { return Gpu(std::move(m), GpuOptions(frac)); }

// The small sparse-attention model most CUDA tests use: C 256, 4 heads, 2 RWKV layers,
// vocabulary 1024, chunks of 16 rows and top-2 chunks (threshold 32: sparse decode from
// the start); max_kv_cache_size as given (0: no compression).
inline std::shared_ptr<Model> SparseTestModel(uint64_t seed, int max_kv_cache_size = 0) {
  auto m = MakeRandomModel(Shape(256, 4, 2, 1024), seed, "t");
  m->attn.chunk_size = 16;
  m->attn.topk = 2;
  m->attn.max_kv_cache_size = max_kv_cache_size;
  return m;
}

inline int Argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

// Relative L2 error and the CPU's top-1 margin.
struct Cmp {
  double rel_l2 = 0, max_abs = 0, ref_std = 0, margin = 0;
};
inline Cmp Compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  Cmp c;
  double num = 0, den = 0, mean = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double d = gpu[i] - cpu[i];
    num += d * d;
    den += double(cpu[i]) * cpu[i];
    c.max_abs = std::max(c.max_abs, std::abs(d));
    mean += cpu[i];
  }
  mean /= cpu.size();
  double var = 0;
  for (float x : cpu) var += (x - mean) * (x - mean);
  c.ref_std = std::sqrt(var / cpu.size());
  c.rel_l2 = std::sqrt(num / std::max(den, 1e-30));
  std::vector<float> s(cpu);
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
  c.margin = s[0] - s[1];
  return c;
}

// The bound, for fp16 weights and fp16 GEMM inputs with fp32 accumulation and fp32 state:
// each GEMM input is rounded to 11 significant bits (relative 2^-11 ~ 4.9e-4 per element);
// the errors are independent, so a dot product of n terms keeps ~5e-4 relative error, and
// through L layers (residual stream, each block adding a bounded perturbation) it grows
// roughly like sqrt(L) to a few 1e-3. We assert rel-L2 <= 2e-2 on the logits (a margin of
// ~5x over what we observe; see docs/CUDA.md for measured values), never NaN.
constexpr double kRelL2Bound = 2e-2;

// Runs the same token stream (teacher-forced by the CPU's greedy choice) through both
// backends; returns the worst comparison and counts argmax agreements.
struct RunStats {
  double worst_rel = 0, worst_abs = 0;
  int steps = 0, agree = 0, agree_clear = 0, clear = 0;
};

inline void Feed(Backend& cpu, Backend& gpu, SessionId sc, SessionId sg, const std::vector<int32_t>& tokens, RunStats* st,
          int32_t* next) {
  std::vector<float> lc, lg;
  ASSERT_TRUE(cpu.Step({{sc, tokens, true}}, &lc).ok());
  auto s = gpu.Step({{sg, tokens, true}}, &lg);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(lc.size(), lg.size());
  for (float x : lg) ASSERT_TRUE(std::isfinite(x));
  const Cmp c = Compare(lg, lc);
  st->worst_rel = std::max(st->worst_rel, c.rel_l2);
  st->worst_abs = std::max(st->worst_abs, c.max_abs);
  const int V = static_cast<int>(lc.size());
  const int ac = Argmax(lc.data(), V), ag = Argmax(lg.data(), V);
  st->steps++;
  st->agree += ac == ag;
  // A "clear" step: the CPU's top-1 leads by more than 4x the largest logit error seen.
  if (c.margin > 4 * c.max_abs) {
    st->clear++;
    st->agree_clear += ac == ag;
  }
  *next = ac;
}

// The CPU session replaced by an import of the GPU's, so that the next step of both starts
// from the same state.
inline void ResyncCpu(Backend& cpu, Backend& gpu, absl::StatusOr<SessionId>* sc, SessionId sg) {
  auto snap = gpu.ExportSession(sg);
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_TRUE(cpu.FreeSession(**sc).ok());
  *sc = cpu.ImportSession(*snap);
  ASSERT_TRUE(sc->ok()) << sc->status();
}

// A GPU backend that replays decode graphs and one that runs every step eagerly.
struct GraphsAndEager {
  std::unique_ptr<Backend> graphs, eager;
  explicit GraphsAndEager(std::shared_ptr<const Model> m) {
    CudaBackendOptions e = GpuOptions();
    e.cuda_graphs = false;
    graphs = Gpu(m, GpuOptions());
    eager = Gpu(m, e);
  }
  bool ok() const { return graphs && eager; }
};

// resync: before every step the CPU session is replaced by an import of the GPU's state, so
// each step is compared from the same starting state (used where the free-running
// comparison is dominated by near-tied compression votes; see docs/CUDA.md).
// max_outliers: steps allowed over `bound` (each printed), for a near-tie of the top-k
// chunk scores that the GPU's fp16 rounding resolves the other way (kv_pages_test.cc).
// `out` (optional) gets the run's figures, compress_steps included.
struct ParityRun {
  int steps = 0, outliers = 0, compress_steps = 0;
  double worst_rel = 0, worst_inlier = 0;
};
inline void RunParity(std::shared_ptr<Model> m, const std::vector<std::vector<int32_t>>& prefills, int decode_steps,
               const char* label, bool resync = false, const CudaBackendOptions& gpu_opts = GpuOptions(),
               double bound = kRelL2Bound, int max_outliers = 0, ParityRun* out = nullptr) {
  auto cpu = MakeCpuBackend(m);
  auto gpu = Gpu(m, gpu_opts);
  ASSERT_NE(gpu, nullptr);
  auto sc = cpu->CreateSession();
  auto sg = gpu->CreateSession();
  ASSERT_TRUE(sc.ok() && sg.ok());
  RunStats st;
  ParityRun run;
  int32_t next = 0;
  auto step = [&](const std::vector<int32_t>& tokens) {
    if (resync) ResyncCpu(*cpu, *gpu, &sc, *sg);
    if (::testing::Test::HasFatalFailure()) return;
    const size_t kv0 = gpu->SessionKvTokens(*sg);
    const double worst0 = st.worst_rel;
    st.worst_rel = 0;
    Feed(*cpu, *gpu, *sc, *sg, tokens, &st, &next);
    const double rel = st.worst_rel;
    st.worst_rel = std::max(worst0, rel);
    run.compress_steps += gpu->SessionKvTokens(*sg) < kv0 + tokens.size() * m->shape.n_attn_layer;
    if (rel > bound) {
      ++run.outliers;
      std::printf("[parity %s] step %d over the bound: rel-L2 %.3e\n", label, st.steps - 1, rel);
    } else {
      run.worst_inlier = std::max(run.worst_inlier, rel);
    }
  };
  for (const auto& p : prefills) step(p);
  for (int i = 0; i < decode_steps && !::testing::Test::HasFatalFailure(); ++i) step({next});
  run.steps = st.steps;
  run.worst_rel = st.worst_rel;
  std::printf("[parity %s] steps %d  worst rel-L2 %.3e (%d over %.0e, the rest %.3e)  worst max|d| %.3e  argmax agree "
              "%d/%d (clear-margin %d/%d)  compress steps %d  kv %zu/%zu\n",
              label, st.steps, st.worst_rel, run.outliers, bound, run.worst_inlier, st.worst_abs, st.agree, st.steps,
              st.agree_clear, st.clear, run.compress_steps, cpu->SessionKvTokens(*sc), gpu->SessionKvTokens(*sg));
  EXPECT_LE(run.outliers, max_outliers);
  EXPECT_EQ(st.agree_clear, st.clear);
  EXPECT_EQ(cpu->SessionKvTokens(*sc), gpu->SessionKvTokens(*sg));
  if (out) *out = run;
}

// The same bits (memcmp: NaNs and signed zeros included).
inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline std::vector<int32_t> Tokens(int n, int V, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    t[i] = static_cast<int32_t>((seed >> 8) % V);
  }
  return t;
}

}  // namespace rwkvx
