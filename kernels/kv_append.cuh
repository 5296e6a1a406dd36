// Appends a step's keys and values to each item's cache (fp16, paged: attn_item.cuh) at
// rows [ct, ct+len), and
// folds the float32 keys into the running per-chunk key sums (deterministic: one writer per
// chunk and column, rows summed in order).
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attn_item.cuh"

namespace rwkvx::kernels {

struct KvAppendParams {
  const AttnItem* items = nullptr;  // [n_items] (device)
  const int* row_item = nullptr;    // [rows]
  const float* k = nullptr;         // [rows, C] float32
  const float* v = nullptr;         // [rows, C]
  int rows = 0, n_items = 0, C = 0;
  int chunk = 2048;                 // B
  int max_chunks_touched = 1;       // max over items of chunks that the new rows touch
  // Every item one row (a pure decode step): the row's block folds its key into the chunk
  // sum itself (one launch; the same arithmetic as the separate chunk-sum kernel).
  bool one_row_items = false;
};
cudaError_t LaunchKvAppend(const KvAppendParams& p, cudaStream_t s);

// Recomputes the chunk sums of rows [0, ct) from the fp16 cache (after compaction or an
// import): chunks [0, ceil(ct / chunk)).
struct ChunkSumsParams {
  KvView kv;    // rows [0, ct)
  SumView sums;
  int ct = 0, C = 0, chunk = 2048;
};
cudaError_t LaunchChunkSums(const ChunkSumsParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
