// A session's storage on the GPU: its RWKV state block (the "slot") and one paged KV cache
// per sparse-attention layer (pages from the backend's KvPagePool, layout in
// kernels/attn_item.cuh). Names of the model's sizes used in the comments: C channels
// (n_embd), H heads of 64, R RWKV blocks, M sparse-attention blocks, B = the attention's
// chunk size (SparseAttnConfig::chunk_size), P = kernels::kKvPageRows.
//
// Ownership: CudaBackend owns every CudaSession (its session map); the pages are the
// pool's, each session holding one reference per page in its tables; the device copies of
// the tables are stream-ordered allocations of the backend's stream, the state block a
// cudaMalloc. Plain data: no locking; only the backend's caller thread touches them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rwkvx::cuda {

// A page table: the host's list of pages in order and its device copy, which the kernels
// read. Entries [0, synced) are current on the device; the rest go up before the next
// kernel that reads the table (CudaBackend::SyncTable).
struct PageTable {
  std::vector<int32_t> pages;  // KvPagePool page ids
  void** dev = nullptr;  // [dev_cap]
  int dev_cap = 0;
  int synced = 0;
  int size() const { return static_cast<int>(pages.size()); }
};

// One sparse layer's KV cache of one session: rows [0, ct) are cached; the KV table has
// ceil(rows / P) pages for the rows reserved so far, the sums table ceil(chunks / P).
struct KvCache {
  PageTable kv;    // K/V pages: row r in page r / P
  PageTable sums;  // chunk-sum pages: chunk c in page c / P
  int ct = 0;
  int Pages() const { return kv.size() + sums.size(); }
};

struct CudaSession {
  float* state = nullptr;   // StateFloats() floats (layout: CudaBackend's state offsets)
  std::vector<KvCache> kv;  // [M]
  long long tokens_seen = 0;
};

}  // namespace rwkvx::cuda
