// Decode attention (one query per item), split across the key length so that one session
// still fills the GPU (flash-decoding): each block takes one head of one item and a slice
// of the item's key rows, keeps an online softmax, and writes a partial (max, sum, acc);
// the last block of each (item, head) merges the slices (or, without tickets, a second
// kernel). Key rows of an item (the new row already appended, by kv_append or, with
// append_k, by this kernel):
//   full:   [0, ct + 1)
//   sparse: the selected chunks' rows (B each), then the tail [(ct div B) * B, ct + 1).
// Scale 1/sqrt(64), no mask, no positions. Items with len != 1 are skipped.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attn_item.cuh"

namespace rwkvx::kernels {

struct AttnDecodeParams {
  const AttnItem* items = nullptr;  // [n_items]
  const float* q = nullptr;         // [rows, C] float32
  const int* selected = nullptr;    // [n_items, topk] from chunk_select (sparse items; not with select)
  void* out = nullptr;              // [rows, C] fp16/bf16 (the Wo GEMM input)
  bool bf16 = false;
  float* part = nullptr;            // scratch: n_items * H * splits * 66 floats
  int n_items = 0, C = 0, H = 0, chunk = 2048, topk = 3;
  int splits = 1;                   // key slices per (item, head): the grid's
  // 0: every item is cut into `splits` slices. > 0: each item into ItemSplits(its own key
  // count, split_want) <= splits slices (the batch-invariant mode: an item's slices, and so
  // its bits, do not depend on the other items; `splits` must be ItemSplits of the longest).
  int split_want = 0;
  bool sparse_only = false;         // skip items on the full path (the prefill kernel takes them)
  // n_items * H counters, zero (and left zero): the last block of each (item, head) to
  // finish merges the slices itself, so there is no second launch. Null: a second kernel
  // merges them (the same arithmetic in the same order: the same bits).
  unsigned* tickets = nullptr;
  // L2 prefetches of each block's key and value rows (items reading every cached row) before
  // the PDL wait: only worth it where the kernel starts early; the backend sets it with its
  // other early reads (CudaBackendOptions::early_reads: PDL steps of small models). At
  // every batch size they took B = 256 to 1.18x the time (H100, session 28).
  bool prefetch_rows = false;
  // kv_append's one-row form inside this kernel (pure decode steps, every item one row, no
  // item left to the prefill kernel: sparse_only false). Where set, each item's new key and
  // value (rows of these [rows, C] float32 products, row0 the item's) go into cache row ct
  // and the key into its chunk's running sum, written by the block of each (item, head)
  // whose slice holds row ct (that head's 64 columns) before it reads the row: the same
  // roundings and sums as kv_append (the same bits), one launch fewer a layer. chunk_select
  // reads only complete chunks' sums, never the one row ct joins. Null: kv_append ran.
  const float* append_k = nullptr;
  const float* append_v = nullptr;
  // Sparse items choose their chunks in this kernel (steps of few sessions): every block of
  // the item scores its complete chunks against q and takes the top k with chunk_select's
  // code (kernels/chunk_select_impl.cuh: the same scores and selection, so the same bits),
  // one launch fewer a layer for a little repeated work per block; `selected` is then not
  // read. max_chunks: the most complete chunks of any item (dynamic shared memory). False:
  // chunk_select ran and wrote `selected`.
  bool select = false;
  int max_chunks = 0;
};
// Key slices of an item of L keys in the batch-invariant mode: about `want` (the host's
// choice for one item alone), at least 64 keys a slice, at most 64 slices.
__host__ __device__ inline int ItemSplits(int L, int want) {
  const int s = want < L / 64 ? want : L / 64;
  return s < 1 ? 1 : s > 64 ? 64 : s;
}
// Scratch floats that `part` must hold.
inline size_t AttnDecodeScratchFloats(int n_items, int H, int splits) {
  return static_cast<size_t>(n_items) * H * splits * 66;
}
cudaError_t LaunchAttnDecode(const AttnDecodeParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
