// Float32 building blocks of the CPU reference engine: norms, linear layers (OpenBLAS),
// elementwise helpers and a small parallel-for. Stateless; every function is safe to
// call from any thread (ParallelFor uses a process-wide pool and must not be nested).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>

namespace rwkvx::cpu {

// out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]; `out` may alias `x`.
void LayerNorm(const float* x, const float* w, const float* b, float* out, int64_t n, float eps = 1e-5f);

// A weight matrix [N, K] (torch Linear layout) stored as float32 or as IEEE fp16.
struct WeightRef {
  const float* f32 = nullptr;
  const uint16_t* f16 = nullptr;
  WeightRef(const float* p) : f32(p) {}     // NOLINT: implicit on purpose
  WeightRef(const uint16_t* p) : f16(p) {}  // NOLINT
};

// Y[M, N] = X[M, K] @ W[N, K]^T  (a torch Linear with weight W, no bias). Y overwritten,
// or accumulated into when `accumulate` is true. Accumulation is float32 either way; the
// result for a row never depends on M or on the row's place in X (engine/cpu/linear.cc).
void Linear(const float* X, WeightRef W, float* Y, int64_t M, int64_t N, int64_t K, bool accumulate = false);

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Runs fn(i) for i in [0, n) on the engine's threads; returns when all are done.
void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn);
// Number of worker threads (set once, before first use; 0 = hardware concurrency).
void SetNumThreads(int n);
int NumThreads();

}  // namespace rwkvx::cpu
