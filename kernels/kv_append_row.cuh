// One new row's key folded into its chunk's running sum for an item of one row: the sum
// ChunkSumUpdateKernel forms for n = 1 (s0 = 0 + k, s1 = s2 = s3 = 0), written once for
// kv_append's one-row form (KvAppendParams::one_row_items) and the decode attention kernel's
// own append (AttnDecodeParams::append_k), so that both give the same bits.
// Threads: device code only; each thread calls it for its own column.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

// The new value of column c of the chunk's sum row `sum`; `fresh`: the row starts its
// chunk (the sum starts from zero rather than from what the row holds).
__device__ __forceinline__ float OneRowChunkSum(const float* sum, int c, bool fresh, float k) {
  float s0 = 0.f;
  s0 += k;
  const float base = fresh ? 0.f : sum[c];
  return base + ((s0 + 0.f) + (0.f + 0.f));
}

}  // namespace rwkvx::kernels
