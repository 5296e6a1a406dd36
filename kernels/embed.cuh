// Embedding gather: x[r, :] = emb[tokens[r], :] (the table is already layer-normed).
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
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
