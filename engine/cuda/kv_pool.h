// KvPagePool: the CUDA backend's one pool of KV pages. Every page has the same size (a
// KV page of kernels/attn_item.cuh: K and V rows [P, C] fp16, or P chunk-sum rows [C]
// float32, the same bytes). Pages are carved from slabs of device memory (cudaMalloc of
// about 64 MiB, a whole number of pages) taken as the pool grows; a slab goes back to the
// driver when none of its pages is in use (ReleaseEmptySlabs). A page is named by an id
// (slab slot * pages per slab + index): the host's page tables hold ids, so reference
// counts are an array lookup; Ptr gives the device address. Pages are reference counted:
// forked sessions share them, and the backend copies a shared page before it writes into
// it (copy-on-write). Free pages are handed out lowest id first, so use packs into the
// oldest slabs and the newest ones empty first.
//
// Admission (how many pages may be in use) is the backend's: the pool only counts.
// Ownership: the pool owns its slabs (freed by the destructor; the caller must have
// synchronised the device's use of them first). Not thread-safe: the backend's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkvx::cuda {

class KvPagePool {
 public:
  using PageId = int32_t;

  KvPagePool(size_t page_bytes, size_t slab_bytes);
  ~KvPagePool();
  KvPagePool(const KvPagePool&) = delete;
  KvPagePool& operator=(const KvPagePool&) = delete;

  // A free page with one reference (contents undefined). ResourceExhausted when no page is
  // free and the driver refuses a new slab.
  absl::StatusOr<PageId> Take();
  void Ref(PageId page) { ++refs_[page]; }
  // Drops a reference; at zero the page is free again. Kernels still queued on the
  // backend's stream may use it: a page taken next is only written by work queued after.
  void Unref(PageId page);
  int Refs(PageId page) const { return refs_[page]; }
  void* Ptr(PageId page) const {
    return slabs_[page / slab_pages_] + static_cast<size_t>(page % slab_pages_) * page_bytes_;
  }

  size_t page_bytes() const { return page_bytes_; }
  size_t pages_used() const { return used_; }
  size_t bytes_used() const { return used_ * page_bytes_; }
  size_t slabs() const;  // slabs held
  size_t bytes_held() const { return slabs() * static_cast<size_t>(slab_pages_) * page_bytes_; }
  // cudaFree of the slabs with no page in use but the first `keep_empty` of them (kept
  // against churn); synchronises the device when it frees one.
  absl::Status ReleaseEmptySlabs(size_t keep_empty);

 private:
  size_t page_bytes_;
  int slab_pages_;
  std::vector<char*> slabs_;      // by slot; null once released
  std::vector<int> slab_used_;    // pages in use per slot
  std::vector<int> refs_;         // per page id
  std::set<PageId> free_;         // free pages of held slabs, lowest first
  size_t used_ = 0;
};

}  // namespace rwkvx::cuda
