// The two pieces of chunk_select that the decode attention kernel also runs when it selects
// the chunks itself (AttnDecodeParams::select): one warp's score of one chunk and warp 0's
// top-k. One piece of code for both kernels, so the scores and the selection are the same
// bits whichever kernel computes them.
// Threads: device code only; each function says which threads call it.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels::chunk_select {

constexpr int kBatch = 16;  // channels a lane loads before it uses the first

// dot(q, sum) / chunk for one chunk, called by every lane of one warp (the result in every
// lane): lane l sums channels l, l + 32, ... in that order, issuing kBatch loads of q and of
// the sum before using the first, then a fixed shuffle tree. q and sum may point to shared
// or global memory.
__device__ __forceinline__ float Score(const float* q, const float* sum, int C, int chunk, int lane) {
  float d = 0.f;
  for (int j0 = lane; j0 < C; j0 += 32 * kBatch) {
    float sv[kBatch], qv[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = j0 + 32 * u;
      sv[u] = j < C ? sum[j] : 0.f;
      qv[u] = j < C ? q[j] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = j0 + 32 * u;
      if (j < C) d += qv[u] * (sv[u] / chunk);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
  return d;
}

// The top `topk` of score[0, nchunks), one at a time (the highest score, the lowest index on
// a tie; a taken score becomes -inf), called by every lane of one warp; lane 0 writes
// out[sel] for sel < topk: the chunk, or -1 past nchunks.
__device__ __forceinline__ void TopK(float* score, int nchunks, int topk, int* out, int lane) {
  const int k = min(topk, nchunks);
  for (int sel = 0; sel < topk; ++sel) {
    if (sel >= k) {
      if (lane == 0) out[sel] = -1;
      continue;
    }
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int c = lane; c < nchunks; c += 32) {
      const float v = score[c];
      if (v > bv || (v == bv && c < bi)) { bv = v; bi = c; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    // Every lane's reads of score above come before lane 0's write below (compute-sanitizer
    // racecheck reported the read/write pair without this barrier; the values read were
    // already in the shuffles, so it changes no result).
    __syncwarp();
    if (lane == 0) {
      out[sel] = bi;
      score[bi] = -INFINITY;  // taken
    }
    __syncwarp();
  }
}

}  // namespace rwkvx::kernels::chunk_select
