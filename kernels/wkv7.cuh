// The RWKV-7 state recurrence for a batch of items (sessions), token by token, exactly the
// sequential form (float32 state, float32 arithmetic). Per item and head, with S [64, 64]
// (row i = value index, column j = key index):
//   sa_i = sum_j S_ij * (-kk_j);  S_ij <- S_ij*w_j + sa_i*kk_j*a_j + v_i*k_j;  y_i = sum_j S_ij*r_j
// The state lives in each item's state block, TRANSPOSED on the GPU: element (i, j) of head
// h is at state[h*4096 + j*64 + i], so thread i reads column-contiguous, coalesced.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/rwkv7_post.cuh"
#include "kernels/rwkv7_prep.cuh"

namespace rwkvx::kernels {

struct Wkv7Params {
  const float *r = nullptr, *w = nullptr, *k = nullptr, *v = nullptr, *kk = nullptr, *a = nullptr;  // [rows, C]
  float* y = nullptr;                  // [rows, C] out
  const int* item_row0 = nullptr;      // [items]
  const int* item_len = nullptr;       // [items]
  float* const* item_state = nullptr;  // [items] state block base
  size_t state_off = 0;                // floats from the base to this layer's [H, 64, 64]
  int items = 0, C = 0, H = 0;
  // State rows a thread (1, 2 or 4; blocks of 256 / rows threads) of LaunchWkv7 and of the
  // chunked form's token pass (kernels/wkv7_chunked.cuh): a thread reads each token's
  // staged inputs once for all its rows (fewer shared-memory reads a row-token, which bound
  // multi-token items); every row's arithmetic is the same, so the same bits whatever the
  // choice (CudaKernels.Wkv7RowsPerThreadSameBits).
  int rows_per_thread = 1;
};
cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s);

// Pure decode steps (every item one token): rwkv7_prep, the recurrence and rwkv7_post of
// one layer in one launch, grid (H, items) x 256. The same arithmetic in the same order as
// the three kernels (kernels/rwkv7_pair.cuh and wkv7::Wkv7Step): the same bits. wkv.r, w,
// k, v, a are the projections' raw outputs (not prepped: nothing is written back but
// prep.v_first on the first layer and post.out); wkv.kk and wkv.y are not used.
struct Wkv7DecodeParams {
  Wkv7Params wkv;
  Rwkv7PrepParams prep;  // vg, v_first, first_layer and the layer's vectors
  Rwkv7PostParams post;  // g, ln_w, ln_b, r_k, out, bf16, eps
  // Warp 0 loads the post's inputs (g, r_k, ln_w, ln_b) with the prep's, into shared
  // memory, instead of after the step (CudaBackendOptions::decode_prefetch): one memory
  // latency fewer on each block's critical path; the same arithmetic, the same bits.
  bool prefetch_post = false;
  // The items' states and the layer's vectors are read before the PDL wait, so that their
  // latency overlaps the kernel before (kernels/launch.cuh): that kernel must not write
  // them (in the backend it is the LoRA up-projections' GEMV group). The same loads, the
  // same bits. Set by the backend in PDL steps of small models
  // (CudaBackendOptions::early_reads).
  bool early = false;
};
cudaError_t LaunchWkv7Decode(const Wkv7DecodeParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
