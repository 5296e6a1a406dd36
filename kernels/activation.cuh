// Elementwise activation of a float32 GEMM output into a half GEMM input:
// LoRA hidden layers (none / tanh / sigmoid) and the channel mix's relu(x)^2.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

enum class Act { kNone = 0, kTanh = 1, kSigmoid = 2, kReluSq = 3 };

struct ActivationParams {
  const float* in = nullptr;  // [n] float32
  void* out = nullptr;        // [n] fp16/bf16
  bool bf16 = false;
  size_t n = 0;
  Act act = Act::kNone;
};
cudaError_t LaunchActivation(const ActivationParams& p, cudaStream_t s);

#ifdef __CUDACC__
__device__ __forceinline__ float ApplyAct(Act a, float x) {
  switch (a) {
    case Act::kTanh: return tanhf(x);
    case Act::kSigmoid: return 1.f / (1.f + expf(-x));
    case Act::kReluSq: x = x > 0.f ? x : 0.f; return x * x;
    default: return x;
  }
}
#endif

}  // namespace rwkvx::kernels
