// RWKV-7 time-mix preparation after the projections, for every row of a step (in place):
//   a  <- sigmoid(a0 + a)                 (a: the A2 LoRA output)
//   kk <- L2-normalise(k * k_k) per head  (64-element groups)
//   k  <- k * (1 + (a - 1) * k_a)
//   v  <- first layer: v_first = v;  else v + (v_first - v) * sigmoid(v0 + vg)
//   w  <- exp(-exp(-0.5) * sigmoid(w0 + w))   (w: the W2 LoRA output; decay in (0,1))
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct Rwkv7PrepParams {
  float* k = nullptr;        // [rows, C]
  float* v = nullptr;        // [rows, C]
  float* w = nullptr;        // [rows, C]
  float* a = nullptr;        // [rows, C]
  float* kk = nullptr;       // [rows, C] out
  const float* vg = nullptr; // [rows, C] V2 LoRA output (not read on the first layer)
  float* v_first = nullptr;  // [rows, C] written on the first layer, read after
  bool first_layer = false;
  const float *w0 = nullptr, *a0 = nullptr, *v0 = nullptr, *k_k = nullptr, *k_a = nullptr;  // [C]
  int rows = 0, C = 0, H = 0;  // head size 64
};
cudaError_t LaunchRwkv7Prep(const Rwkv7PrepParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
