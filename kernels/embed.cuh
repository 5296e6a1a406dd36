// Embedding gather: x[r, :] = emb[tokens[r], :] (the table is already layer-normed).
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct EmbedParams {
  const float* emb = nullptr;    // [V, C] float32
  const int* tokens = nullptr;   // [rows]
  float* x = nullptr;            // [rows, C] float32
  int rows = 0, C = 0;
};
cudaError_t LaunchEmbed(const EmbedParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
