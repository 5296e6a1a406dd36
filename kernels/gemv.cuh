// Skinny product for decode steps with at most 4 rows: y[r, o] (+)= sum_i x[r, i] * w[o, i]
// (w a torch Linear weight [out, in] in fp16/bf16, x the half GEMM input, fp32
// accumulation). cuBLAS takes ~6 us per such launch on an H100 whatever the size (its
// tiles are built for many rows); one warp per output row streaming 16-byte loads is
// bound by the weight bytes instead.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct GemvParams {
  const void* x = nullptr;  // [rows, in] fp16/bf16
  const void* w = nullptr;  // [out, in] fp16/bf16
  float* y = nullptr;       // [rows, out] float32 (or null)
  void* y_half = nullptr;   // [rows, out] fp16/bf16 (when y is null)
  bool accumulate = false;  // y += instead of y = (float32 output only)
  bool bf16 = false;
  int rows = 0, out = 0, in = 0;  // rows <= 4, in % 8 == 0
};
constexpr int kGemvMaxRows = 4;
cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
