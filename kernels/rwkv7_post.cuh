// RWKV-7 output: per row and head, GroupNorm of y (eps 64e-5, affine ln_x), plus the bonus
// (sum_j r_j*k_j*r_k[h,j]) * v, times the gate g; written as the Wo GEMM's half input.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct Rwkv7PostParams {
  const float *y = nullptr, *r = nullptr, *k = nullptr, *v = nullptr, *g = nullptr;  // [rows, C]
  const float *ln_w = nullptr, *ln_b = nullptr;  // [C]
  const float* r_k = nullptr;                    // [H * 64]
  void* out = nullptr;                           // [rows, C] fp16/bf16
  bool bf16 = false;
  int rows = 0, C = 0, H = 0;
  float eps = 64e-5f;
};
cudaError_t LaunchRwkv7Post(const Rwkv7PostParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
