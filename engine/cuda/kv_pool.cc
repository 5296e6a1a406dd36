#include "engine/cuda/kv_pool.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_check.h"

namespace rwkvx::cuda {

KvPagePool::KvPagePool(size_t page_bytes, size_t slab_bytes)
    : page_bytes_(page_bytes), slab_pages_(std::max<size_t>(1, slab_bytes / page_bytes)) {}

KvPagePool::~KvPagePool() {
  for (auto& [base, s] : slabs_) cudaFree(base);
}

std::pair<KvPagePool::Slab*, size_t> KvPagePool::Find(const void* page) const {
  const char* p = static_cast<const char*>(page);
  auto it = slabs_.upper_bound(const_cast<char*>(p));
  if (it == slabs_.begin()) return {nullptr, 0};
  --it;
  const size_t off = static_cast<size_t>(p - it->first);
  if (off >= slab_pages_ * page_bytes_ || off % page_bytes_ != 0) return {nullptr, 0};
  return {const_cast<Slab*>(&it->second), off / page_bytes_};
}

absl::StatusOr<void*> KvPagePool::Take() {
  if (free_.empty()) {
    char* base = nullptr;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&base), slab_pages_ * page_bytes_);
    if (e != cudaSuccess) {
      if (e != cudaErrorMemoryAllocation) RWKVX_CUDA_RETURN(e);
      cudaGetLastError();  // not sticky: clear it
      return absl::ResourceExhaustedError(
          absl::StrCat("GPU memory exhausted: no room for another slab of KV pages (", slab_pages_ * page_bytes_,
                       " bytes; ", used_, " pages in use)"));
    }
    Slab& s = slabs_[base];
    s.refs.assign(slab_pages_, 0);
    for (size_t i = 0; i < slab_pages_; ++i) free_.insert(base + i * page_bytes_);
  }
  char* page = *free_.begin();
  free_.erase(free_.begin());
  auto [slab, i] = Find(page);
  slab->refs[i] = 1;
  ++slab->used;
  ++used_;
  return page;
}

void KvPagePool::Ref(void* page) {
  auto [slab, i] = Find(page);
  if (slab) ++slab->refs[i];
}

void KvPagePool::Unref(void* page) {
  auto [slab, i] = Find(page);
  if (!slab || slab->refs[i] == 0) return;
  if (--slab->refs[i] == 0) {
    --slab->used;
    --used_;
    free_.insert(static_cast<char*>(page));
  }
}

int KvPagePool::Refs(const void* page) const {
  auto [slab, i] = Find(page);
  return slab ? slab->refs[i] : 0;
}

absl::Status KvPagePool::ReleaseEmptySlabs(size_t keep_empty) {
  size_t empty = 0;
  for (const auto& [base, s] : slabs_) empty += s.used == 0;
  if (empty <= keep_empty) return absl::OkStatus();
  RWKVX_CUDA_RETURN(cudaDeviceSynchronize());
  size_t kept = 0;
  for (auto it = slabs_.begin(); it != slabs_.end();) {
    if (it->second.used != 0 || kept++ < keep_empty) {
      ++it;
      continue;
    }
    char* base = it->first;
    free_.erase(free_.lower_bound(base), free_.lower_bound(base + slab_pages_ * page_bytes_));
    RWKVX_CUDA_RETURN(cudaFree(base));
    it = slabs_.erase(it);
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
