// KvPagePool: the CUDA backend's one pool of KV pages. Every page has the same size (a
// KV page of kernels/attn_item.cuh: K and V rows [P, C] fp16, or P chunk-sum rows [C]
// float32, the same bytes). Pages are carved from slabs of device memory (cudaMalloc of
// about 64 MiB, a whole number of pages) taken as the pool grows; a slab goes back to the
// driver when none of its pages is in use (ReleaseEmptySlabs). Pages are reference
// counted: forked sessions share them, and the backend copies a shared page before it
// writes into it (copy-on-write). Free pages are handed out lowest address first, so use
// packs into the oldest slabs and the newest ones empty first.
//
// Admission (how many pages may be in use) is the backend's: the pool only counts.
// Ownership: the pool owns its slabs (freed by the destructor; the caller must have
// synchronised the device's use of them first). Not thread-safe: the backend's thread.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkvx::cuda {

class KvPagePool {
 public:
  KvPagePool(size_t page_bytes, size_t slab_bytes);
  ~KvPagePool();
  KvPagePool(const KvPagePool&) = delete;
  KvPagePool& operator=(const KvPagePool&) = delete;

  // A free page with one reference (contents undefined). ResourceExhausted when no page is
  // free and the driver refuses a new slab.
  absl::StatusOr<void*> Take();
  void Ref(void* page);
  // Drops a reference; at zero the page is free again. Kernels still queued on the
  // backend's stream may use it: a page taken next is only written by work queued after.
  void Unref(void* page);
  int Refs(const void* page) const;

  size_t page_bytes() const { return page_bytes_; }
  size_t pages_used() const { return used_; }
  size_t bytes_used() const { return used_ * page_bytes_; }
  size_t bytes_held() const { return slabs_.size() * slab_pages_ * page_bytes_; }  // slabs taken
  size_t slabs() const { return slabs_.size(); }
  // cudaFree of the slabs with no page in use but the first `keep_empty` of them (kept
  // against churn); synchronises the device when it frees one.
  absl::Status ReleaseEmptySlabs(size_t keep_empty);

 private:
  struct Slab {
    std::vector<int> refs;  // per page
    int used = 0;
  };
  // The slab holding `page` and the page's index in it.
  std::pair<Slab*, size_t> Find(const void* page) const;

  size_t page_bytes_, slab_pages_;
  std::map<char*, Slab> slabs_;  // by base address
  std::set<char*> free_;         // free pages, lowest first
  size_t used_ = 0;
};

}  // namespace rwkvx::cuda
