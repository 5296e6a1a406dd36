// Prefill attention for items with len > 1 (and, with `singles`, full-path decode items;
// the new rows already appended to the cache).
// Query i of an item (cache row ct + i) attends causally to cache rows [lo_i, ct + i]:
//   full-prefix path (prefix = 1): lo_i = 0 (the whole cache, then the new rows up to i)
//   chunk-local path (prefix = 0): lo_i = ct + (i div B) * B (pieces of B from the first
//                                  new token; the cache is ignored)
// On tensor cores (kernels/attn_prefill.cu): a block holds 64 queries of one head and walks
// 64-row key tiles through shared memory with an online softmax; q (scaled) and the
// probabilities enter the MMAs as fp16, sums in fp32. Scale 1/sqrt(64).
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attn_item.cuh"

namespace rwkvx::kernels {

struct AttnPrefillParams {
  const AttnItem* items = nullptr;  // [n_items]
  const float* q = nullptr;         // [rows, C] float32
  void* out = nullptr;              // [rows, C] fp16/bf16
  bool bf16 = false;
  int n_items = 0, C = 0, H = 0, chunk = 2048;
  int max_len = 0;                  // max item len (grid size)
  // Also one-row items on the full path (len 1, sparse 0, prefix 1): the batch-invariant
  // mode, where a decode token and a prefill row of the same keys are the same sums.
  bool singles = false;
};
cudaError_t LaunchAttnPrefill(const AttnPrefillParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
