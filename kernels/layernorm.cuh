// LayerNorm over rows of C floats: out = (x - mean) / sqrt(var + eps) * w + b.
// Optionally gathers rows (row_index) and writes a float32 and/or a half copy.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct LayerNormParams {
  const float* x = nullptr;         // [*, C] float32
  const int* row_index = nullptr;   // optional: out row r reads x row row_index[r]
  const float* w = nullptr;         // [C]
  const float* b = nullptr;         // [C]
  float* out = nullptr;             // optional [rows, C] float32 (may alias x without row_index)
  void* out_half = nullptr;         // optional [rows, C] fp16/bf16
  bool bf16 = false;                // type of out_half
  int rows = 0, C = 0;
  float eps = 1e-5f;
};
cudaError_t LaunchLayerNorm(const LayerNormParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
