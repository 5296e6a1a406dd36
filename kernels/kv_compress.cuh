// KV-cache compression of one session-layer (the reference's update_kv_cache):
// the older rows [0, npast) are voted on by nq query rows Q (per head: the softmax weight,
// scale 1/sqrt(64), softmax over the older rows only, summed over the queries); per head
// the `keep` rows with the largest vote are kept in descending vote order (ties: lower row
// first), followed by the window rows [npast, ct). The result is gathered into `new_k/v`
// (rows [0, keep + ct - npast)); each head may keep different rows. Both caches are paged
// (kernels/attn_item.cuh); `out` must not share pages with `kv`.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attn_item.cuh"

namespace rwkvx::kernels {

struct KvCompressParams {
  KvView kv;                  // the old cache, rows [0, ct)
  KvView out;                 // the new cache, rows [0, keep + ct - npast) written
  const float* q = nullptr;   // [nq, C] float32 voting rows
  int nq = 0, ct = 0, npast = 0, keep = 0, C = 0, H = 0;
  float* votes = nullptr;     // optional out [H, npast] (tests); else scratch is used
};
// Allocates its scratch stream-ordered (cudaMallocAsync) and frees it before returning.
cudaError_t LaunchKvCompress(const KvCompressParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
