// Elementwise activation of a float32 GEMM output into a half GEMM input:
// LoRA hidden layers (none / tanh / sigmoid) and the channel mix's relu(x)^2.
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

}  // namespace rwkvx::kernels
