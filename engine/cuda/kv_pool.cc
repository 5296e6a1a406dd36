#include "engine/cuda/kv_pool.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_check.h"

namespace rwkvx::cuda {

KvPagePool::KvPagePool(size_t page_bytes, size_t slab_bytes)
    : page_bytes_(page_bytes), slab_pages_(static_cast<int>(std::max<size_t>(1, slab_bytes / page_bytes))) {}

KvPagePool::~KvPagePool() {
  for (char* base : slabs_)
    if (base) cudaFree(base);
}

size_t KvPagePool::slabs() const {
  return static_cast<size_t>(std::count_if(slabs_.begin(), slabs_.end(), [](char* b) { return b != nullptr; }));
}

absl::StatusOr<KvPagePool::PageId> KvPagePool::Take() {
  if (free_.empty()) {
    char* base = nullptr;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&base), static_cast<size_t>(slab_pages_) * page_bytes_);
    if (e != cudaSuccess) {
      if (e != cudaErrorMemoryAllocation) RWKVX_CUDA_RETURN(e);
      cudaGetLastError();  // not sticky: clear it
      return absl::ResourceExhaustedError(
          absl::StrCat("GPU memory exhausted: no room for another slab of KV pages (",
                       static_cast<size_t>(slab_pages_) * page_bytes_, " bytes; ", used_, " pages in use)"));
    }
    size_t slot = std::find(slabs_.begin(), slabs_.end(), nullptr) - slabs_.begin();
    if (slot == slabs_.size()) {
      slabs_.push_back(nullptr);
      slab_used_.push_back(0);
      refs_.resize(refs_.size() + slab_pages_, 0);
    }
    slabs_[slot] = base;
    for (int i = 0; i < slab_pages_; ++i) free_.insert(static_cast<PageId>(slot * slab_pages_ + i));
  }
  const PageId page = *free_.begin();
  free_.erase(free_.begin());
  refs_[page] = 1;
  ++slab_used_[page / slab_pages_];
  ++used_;
  return page;
}

void KvPagePool::Unref(PageId page) {
  if (refs_[page] == 0) return;
  if (--refs_[page] == 0) {
    --slab_used_[page / slab_pages_];
    --used_;
    free_.insert(page);
  }
}

absl::Status KvPagePool::ReleaseEmptySlabs(size_t keep_empty) {
  size_t empty = 0;
  for (size_t s = 0; s < slabs_.size(); ++s) empty += slabs_[s] && slab_used_[s] == 0;
  if (empty <= keep_empty) return absl::OkStatus();
  RWKVX_CUDA_RETURN(cudaDeviceSynchronize());
  size_t kept = 0;
  for (size_t s = 0; s < slabs_.size(); ++s) {
    if (!slabs_[s] || slab_used_[s] != 0 || kept++ < keep_empty) continue;
    const PageId first = static_cast<PageId>(s * slab_pages_);
    free_.erase(free_.lower_bound(first), free_.lower_bound(first + slab_pages_));
    RWKVX_CUDA_RETURN(cudaFree(slabs_[s]));
    slabs_[s] = nullptr;
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
