// The row statistics of kernels/layernorm.cu, shared with the GEMV's folded LayerNorm
// (kernels/gemv.cuh, GemvFold) so that both compute the same bits: 256 threads, thread t
// owning the columns t + i * 256 (i < kPer) and summing them in that order, the block sum
// of kernels/kernel_util.cuh, two passes (mean, then the centred variance).
// Threads: device code, called by all 256 threads of a block.
#pragma once
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {

constexpr int kLnThreads = 256;

// The row's mean and 1 / sqrt(var + eps) from this thread's columns (zeros past C are
// skipped, so a larger kPer gives the same bits). Contains __syncthreads.
template <int kPer>
__device__ __forceinline__ void LnRowStats(const float (&xv)[kPer], int C, float eps, float* scratch,
                                           float* mean_out, float* inv_out) {
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    if (threadIdx.x + i * kLnThreads < C) s += xv[i];
  const float mean = BlockSum(s, scratch) / C;
  float v = 0.f;
#pragma unroll
  for (int i = 0; i < kPer; ++i)
    if (threadIdx.x + i * kLnThreads < C) {
      const float d = xv[i] - mean;
      v += d * d;
    }
  const float var = BlockSum(v, scratch) / C;
  *mean_out = mean;
  *inv_out = 1.f / sqrtf(var + eps);
}

}  // namespace rwkvx::kernels
