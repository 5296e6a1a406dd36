// One item (session) of a sparse-attention layer in a step, as the attention kernels see
// it, and the paged layout of a session-layer's KV cache.
//
// Paged KV: cache rows live in fixed-size pages of kKvPageRows rows taken from one pool
// (engine/cuda/kv_pool.h). A KV page holds K rows [P, C] then V rows [P, C], fp16; the
// session-layer's page table lists its pages in row order (row r is row r % P of page
// r / P). Running per-chunk key sums (float32 [C] per chunk of B cache rows, chunk c =
// rows [c*B, (c+1)*B)) live in pages of the same size holding P chunk rows each, listed
// in a second table. Pages may be shared between forked sessions (copy-on-write: the
// engine copies a shared page before any kernel writes into it).
// Rows [0, ct) were cached before the step; the step's `len` rows are appended at
// [ct, ct + len) before attention runs (kv_append).
// Plain data: the host fills it and uploads it (the engine owns the pages and tables it
// points to); kernels read it and write through it (kv_append) in the stream order of
// their launches. Threads: filled on the host by the CUDA backend's step thread.
#pragma once
#include <cuda_fp16.h>

#include <cstddef>

namespace rwkvx::kernels {

constexpr int kKvPageShift = 7;
constexpr int kKvPageRows = 1 << kKvPageShift;  // P: rows per page (a power of two)

// A session-layer's K/V rows through its page table: K row r at pages[r / P] + (r % P) * C,
// V row r at that address + v_off (halves). Pool pages have v_off = P * C.
struct KvView {
  __half* const* pages = nullptr;  // device table
  long long v_off = 0;
  __device__ __forceinline__ __half* K(int row, int C) const {
    return pages[row >> kKvPageShift] + static_cast<size_t>(row & (kKvPageRows - 1)) * C;
  }
  __device__ __forceinline__ __half* V(int row, int C) const { return K(row, C) + v_off; }
};

// Chunk key sums through their page table: chunk c's row at pages[c / P] + (c % P) * C.
struct SumView {
  float* const* pages = nullptr;  // device table
  __device__ __forceinline__ float* Row(int c, int C) const {
    return pages[c >> kKvPageShift] + static_cast<size_t>(c & (kKvPageRows - 1)) * C;
  }
};

struct AttnItem {
  KvView kv;
  SumView sums;
  int ct = 0;       // cached rows before this step (after any compression)
  int row0 = 0;     // first row of the item in the step
  int len = 0;      // rows of the item in the step (1 = decode)
  int prefix = 1;   // prefill: 1 = full-prefix path (sees the cache), 0 = chunk-local pieces
  int sparse = 0;   // decode: 1 = top-k chunks + tail, 0 = every cached row
};

}  // namespace rwkvx::kernels
