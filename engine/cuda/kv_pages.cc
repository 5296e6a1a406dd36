// CudaBackend's paged KV caches: page counts, copy-on-write, page tables on the device, and
// the memory figures the scheduler plans with (engine/backend.h, docs/MEMORY.md). Layout:
// kernels/attn_item.cuh; the pool: engine/cuda/kv_pool.h.
#include <cuda_fp16.h>

#include <algorithm>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "engine/status_macros.h"

namespace rwkvx::cuda {

using kernels::kKvPageRows;

size_t CudaBackend::PageBytes() const { return static_cast<size_t>(kKvPageRows) * C_ * 2 * sizeof(__half); }

int CudaBackend::KvPagesFor(long long rows) const {
  return static_cast<int>((std::max(0LL, rows) + kKvPageRows - 1) / kKvPageRows);
}

int CudaBackend::SumPagesFor(long long rows) const {
  if (rows <= 0) return 0;
  const long long chunks = (rows - 1) / model_->attn.chunk_size + 1;
  return static_cast<int>((chunks + kKvPageRows - 1) / kKvPageRows);
}

size_t CudaBackend::CacheBytesFor(long long rows) const {
  return static_cast<size_t>(KvPagesFor(rows) + SumPagesFor(rows)) * PageBytes();
}

int CudaBackend::StepPages(const KvCache& kv, int T) const {
  if (T <= 0) return 0;
  const int B = model_->attn.chunk_size;
  const long long end = static_cast<long long>(kv.ct) + T;
  int n = std::max(0, KvPagesFor(end) - kv.kv.size()) + std::max(0, SumPagesFor(end) - kv.sums.size());
  auto shared = [&](const PageTable& t, long long first, long long last) {
    int c = 0;
    for (long long pg = first; pg <= std::min<long long>(last, t.size() - 1); ++pg) c += pool_->Refs(t.pages[pg]) > 1;
    return c;
  };
  n += shared(kv.kv, kv.ct / kKvPageRows, (end - 1) / kKvPageRows);
  n += shared(kv.sums, (kv.ct / B) / kKvPageRows, ((end - 1) / B) / kKvPageRows);
  return n;
}

absl::Status CudaBackend::GrowTable(PageTable* t, int pages) {
  while (t->size() < pages) {
    auto page = pool_->Take();
    if (!page.ok()) return page.status();
    t->pages.push_back(*page);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::MakePrivate(PageTable* t, long long first, long long last) {
  for (long long pg = first; pg <= std::min<long long>(last, t->size() - 1); ++pg) {
    const int32_t old = t->pages[pg];
    if (pool_->Refs(old) <= 1) continue;
    auto page = pool_->Take();
    if (!page.ok()) return page.status();
    RWKVX_CUDA_RETURN(
        cudaMemcpyAsync(pool_->Ptr(*page), pool_->Ptr(old), PageBytes(), cudaMemcpyDeviceToDevice, stream_));
    pool_->Unref(old);
    t->pages[pg] = *page;
    t->synced = std::min<int>(t->synced, static_cast<int>(pg));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::ReserveRows(KvCache* kv, int T) {
  if (T <= 0) return absl::OkStatus();
  const int B = model_->attn.chunk_size;
  const long long end = static_cast<long long>(kv->ct) + T;
  RWKVX_RETURN_IF_ERROR(MakePrivate(&kv->kv, kv->ct / kKvPageRows, (end - 1) / kKvPageRows));
  RWKVX_RETURN_IF_ERROR(MakePrivate(&kv->sums, (kv->ct / B) / kKvPageRows, ((end - 1) / B) / kKvPageRows));
  RWKVX_RETURN_IF_ERROR(GrowTable(&kv->kv, KvPagesFor(end)));
  return GrowTable(&kv->sums, SumPagesFor(end));
}

void CudaBackend::ReleaseTable(PageTable* t) {
  for (int32_t p : t->pages) pool_->Unref(p);
  if (t->dev) cudaFreeAsync(t->dev, stream_);
  *t = PageTable{};
}

void CudaBackend::ReleaseCache(KvCache* kv) {
  ReleaseTable(&kv->kv);
  ReleaseTable(&kv->sums);
  kv->ct = 0;
}

absl::Status CudaBackend::SyncTable(PageTable* t, PageUpdates* updates) {
  if (t->synced >= t->size()) return absl::OkStatus();
  if (t->dev_cap < t->size()) {
    const int cap = std::max({16, t->size(), 2 * t->dev_cap});
    void** dev = nullptr;
    RWKVX_CUDA_RETURN(cudaMallocAsync(reinterpret_cast<void**>(&dev), cap * sizeof(void*), stream_));
    if (t->dev) {
      if (t->synced > 0)
        RWKVX_CUDA_RETURN(cudaMemcpyAsync(dev, t->dev, t->synced * sizeof(void*), cudaMemcpyDeviceToDevice, stream_));
      RWKVX_CUDA_RETURN(cudaFreeAsync(t->dev, stream_));
    }
    t->dev = dev;
    t->dev_cap = cap;
  }
  if (updates) {
    for (int i = t->synced; i < t->size(); ++i) {
      updates->dst.push_back(t->dev + i);
      updates->val.push_back(pool_->Ptr(t->pages[i]));
    }
  } else {  // pageable source: the call returns once the entries are staged
    std::vector<void*> ptrs(t->size() - t->synced);
    for (size_t i = 0; i < ptrs.size(); ++i) ptrs[i] = pool_->Ptr(t->pages[t->synced + i]);
    RWKVX_CUDA_RETURN(
        cudaMemcpyAsync(t->dev + t->synced, ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice, stream_));
  }
  t->synced = t->size();
  return absl::OkStatus();
}

absl::Status CudaBackend::SyncCache(KvCache* kv, PageUpdates* updates) {
  RWKVX_RETURN_IF_ERROR(SyncTable(&kv->kv, updates));
  return SyncTable(&kv->sums, updates);
}

kernels::KvView CudaBackend::KvViewOf(const KvCache& kv) const {
  kernels::KvView v;
  v.pages = reinterpret_cast<__half* const*>(kv.kv.dev);
  v.v_off = static_cast<long long>(kKvPageRows) * C_;
  return v;
}

kernels::SumView CudaBackend::SumViewOf(const KvCache& kv) const {
  kernels::SumView v;
  v.pages = reinterpret_cast<float* const*>(kv.sums.dev);
  return v;
}

// --- Memory figures.

// The pad session's pages are not the sessions' (its bytes came off the budget at start).
size_t CudaBackend::UsedBytes() const {
  size_t pad_pages = 0;
  for (const KvCache& kv : pad_.kv) pad_pages += kv.Pages();
  return pool_->bytes_used() - pad_pages * PageBytes() + sessions_.size() * StateFloats() * sizeof(float);
}

size_t CudaBackend::SessionBytesOf(const CudaSession& s) const {
  size_t pages = 0;
  for (const auto& kv : s.kv) pages += kv.Pages();
  return StateFloats() * sizeof(float) + pages * PageBytes();
}

bool CudaBackend::SessionsFit(size_t extra, size_t ws) const {
  if (UsedBytes() + ws + extra > budget_bytes_) return false;
  return !opts_.memory_budget_bytes || UsedBytes() + extra <= opts_.memory_budget_bytes;
}

size_t CudaBackend::SessionBytes(SessionId id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? 0 : SessionBytesOf(it->second);
}

size_t CudaBackend::SessionKvTokens(SessionId id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return 0;
  size_t n = 0;
  for (const auto& kv : it->second.kv) n += kv.ct;
  return n;
}

MemoryInfo CudaBackend::Memory() const {
  MemoryInfo m;
  m.used_bytes = UsedBytes();
  const size_t ws = WsBytesNow();
  m.capacity_bytes = budget_bytes_ > ws ? budget_bytes_ - ws : 0;
  if (opts_.memory_budget_bytes) m.capacity_bytes = std::min(m.capacity_bytes, opts_.memory_budget_bytes);
  m.weights_bytes = dev_ ? dev_->bytes : 0;
  return m;
}

DeviceUsage CudaBackend::Usage() const {
  DeviceUsage u;
  // The stream-ordered pool (device page tables, compression scratch) keeps what it took.
  uint64_t async_reserved = 0;
  cudaMemPool_t mp;
  if (cudaDeviceGetDefaultMemPool(&mp, opts_.device) == cudaSuccess &&
      cudaMemPoolGetAttribute(mp, cudaMemPoolAttrReservedMemCurrent, &async_reserved) != cudaSuccess)
    async_reserved = 0;
  u.device_bytes = (sessions_.size() + free_states_.size() + (pad_.state ? 1 : 0)) * StateFloats() * sizeof(float) +
                   (pool_ ? pool_->bytes_held() : 0) + WsBytesNow() + meta_cap_ + samp_scratch_cap_ +
                   (cublas_ws_ ? size_t{64} << 20 : 0) + async_reserved;
  u.graphs = GraphCount();
  return u;
}

// Rows one sparse layer can hold at most: with compression, the cap plus a prefill chunk
// before the next step compresses (2 B as the planning figure); without it, unbounded:
// the full-attention threshold plus a chunk.
size_t CudaBackend::MaxSessionBytes() const {
  const SparseAttnConfig& a = model_->attn;
  const long long rows = a.max_kv_cache_size > 0 ? a.max_kv_cache_size + 2LL * a.chunk_size
                                                 : static_cast<long long>(a.Threshold()) + a.chunk_size;
  return StateFloats() * sizeof(float) + static_cast<size_t>(M_) * CacheBytesFor(rows);
}

size_t CudaBackend::SessionBytesFor(size_t kv_tokens) const {
  const SparseAttnConfig& a = model_->attn;
  long long rows = static_cast<long long>(std::min<size_t>(kv_tokens, size_t{1} << 40));
  if (a.max_kv_cache_size > 0) rows = std::min(rows, a.max_kv_cache_size + 2LL * a.chunk_size);
  return StateFloats() * sizeof(float) + static_cast<size_t>(M_) * CacheBytesFor(rows);
}

// New pages and copies of shared pages the step writes; a cache about to compress needs
// its whole compaction target (the old pages are given back after the step).
size_t CudaBackend::StepBytes(SessionId id, size_t tokens) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return 0;
  const SparseAttnConfig& a = model_->attn;
  const int T = static_cast<int>(std::min<size_t>(tokens, 1 << 30));
  size_t pages = 0;
  for (const KvCache& kv : it->second.kv) {
    if (a.max_kv_cache_size > 0 && kv.ct > a.max_kv_cache_size)
      pages += KvPagesFor(a.min_kv_cache_size + T) + SumPagesFor(a.min_kv_cache_size + T);
    else
      pages += StepPages(kv, T);
  }
  return pages * PageBytes();
}

}  // namespace rwkvx::cuda
