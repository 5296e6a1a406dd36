// Decode chunk selection (sparse path): for each sparse decode item, score every complete
// chunk of the cache (chunks = ct div B) by dot(q, chunk key sum) / B over all C (one
// selection shared by all heads) and keep the top-k (ties: the lower chunk first).
// Cost O(chunks * C) per item thanks to the running sums.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attn_item.cuh"

namespace rwkvx::kernels {

struct ChunkSelectParams {
  const AttnItem* items = nullptr;  // [n_items]
  const float* q = nullptr;         // [rows, C] float32
  int* selected = nullptr;          // [n_items, topk] chunk ids (-1 = unused)
  int n_items = 0, C = 0, chunk = 2048, topk = 3;
  int max_chunks = 0;               // max over items of ct div B (sizes shared memory)
};
cudaError_t LaunchChunkSelect(const ChunkSelectParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
