// One item (session) of a sparse-attention layer in a step, as the attention kernels see
// it. The key/value cache of a session-layer is one contiguous buffer [cap, C] of fp16;
// rows [0, ct) were cached before the step, the step's `len` rows are appended at
// [ct, ct + len) before attention runs (kv_append). `sums` holds running per-chunk key sums
// [cap / chunk + 2, C] float32 (chunk c covers cache rows [c*B, (c+1)*B); rows [0, cap)
// touch at most cap / chunk + 1 chunks, the allocation has one row to spare).
// Plain data: the host fills it and uploads it (the engine owns the buffers it points to);
// kernels read it and write through it (kv_append) in the stream order of their launches.
// Threads: a plain struct filled on the host by the CUDA backend's step thread and read by
// the attention kernels; its pointers are device memory owned by the backend.
#pragma once
#include <cuda_fp16.h>

namespace rwkvx::kernels {

struct AttnItem {
  __half* k = nullptr;
  __half* v = nullptr;
  float* sums = nullptr;
  int ct = 0;       // cached rows before this step (after any compression)
  int row0 = 0;     // first row of the item in the step
  int len = 0;      // rows of the item in the step (1 = decode)
  int prefix = 1;   // prefill: 1 = full-prefix path (sees the cache), 0 = chunk-local pieces
  int sparse = 0;   // decode: 1 = top-k chunks + tail, 0 = every cached row
};

}  // namespace rwkvx::kernels
