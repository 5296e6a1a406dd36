// A session's storage on the GPU: its RWKV state block (the "slot") and one KV cache per
// sparse-attention layer. Names of the model's sizes used in the comments: C channels
// (n_embd), H heads of 64, R RWKV blocks, M sparse-attention blocks, B = the attention's
// chunk size (SparseAttnConfig::chunk_size).
//
// Ownership: CudaBackend owns every CudaSession (its session map) and every buffer in it;
// the pointers are device memory (KV buffers stream-ordered from the pool on the backend's
// stream, the state block by cudaMalloc). Plain data: no locking; only the backend's
// caller thread touches them.
#pragma once

#include <cuda_fp16.h>

#include <cstddef>
#include <vector>

namespace rwkvx::cuda {

// One sparse layer's KV cache of one session: rows [0, ct) are cached, [ct, cap) free.
struct KvCache {
  __half* k = nullptr;    // [cap, C] fp16
  __half* v = nullptr;    // [cap, C] fp16
  // Running per-chunk key sums [cap / B + 2, C] float32, chunk c = rows [c*B, (c+1)*B).
  // Rows [0, cap) touch at most cap / B + 1 chunks; the allocation has one row to spare.
  float* sums = nullptr;
  int cap = 0, ct = 0;
  size_t Bytes(int C, int chunk) const;  // k, v and sums at this cap (0 when cap == 0)
};

struct CudaSession {
  float* state = nullptr;   // StateFloats() floats (layout: CudaBackend's state offsets)
  std::vector<KvCache> kv;  // [M]
  long long tokens_seen = 0;
};

}  // namespace rwkvx::cuda
