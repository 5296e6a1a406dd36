// The CPU backend's sparse KV store: one sparse block's cached keys and values as fixed
// pages of kKvPageRows rows x C floats (k and v), held by shared_ptr so that a forked
// session shares its parent's pages copy-on-write. Row r lives in page r / P at row r % P.
//
// Ownership and threads: a KvPages value belongs to one CPU session (engine/cpu/cpu_session.h);
// pages may be shared by several sessions of one backend, which only that backend's one
// caller thread touches (reads from ParallelFor jobs inside a step are fine: nothing writes
// a page during the step's attention). A page is written only while its holder is its sole
// owner: Append copies a shared, partly filled last page first; rewrites (compression,
// import) build new pages. Every page adds its bytes to a KvPageAccount while it lives, so
// the backend sees each shared page once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/cpu/attention.h"

namespace rwkvx::cpu {

// Rows per page. A divisor of every power-of-two chunk size from 64 up, so a chunk of the
// sparse decode is whole pages; 64 rows keep a span long enough for the attention loops and
// a fork's copy-on-write cost (one page per sparse block) small (64 * C * 8 bytes).
inline constexpr int64_t kKvPageRows = 64;

// Live page count and bytes of one backend (shared by all its sessions' pages).
struct KvPageAccount {
  std::atomic<int64_t> pages{0};
  std::atomic<int64_t> bytes{0};
};

class KvPage {
 public:
  KvPage(int64_t C, std::shared_ptr<KvPageAccount> account);
  ~KvPage();
  KvPage(const KvPage&) = delete;
  KvPage& operator=(const KvPage&) = delete;
  float* k() { return data_.get(); }
  float* v() { return data_.get() + kKvPageRows * C_; }
  const float* k() const { return data_.get(); }
  const float* v() const { return data_.get() + kKvPageRows * C_; }
  size_t Bytes() const { return 2 * kKvPageRows * C_ * sizeof(float); }

 private:
  int64_t C_;
  std::unique_ptr<float[]> data_;  // k [P, C] then v [P, C]; rows past the holder's count unset
  std::shared_ptr<KvPageAccount> account_;
};

class KvPages {
 public:
  KvPages() = default;
  KvPages(int64_t C, std::shared_ptr<KvPageAccount> account) : C_(C), account_(std::move(account)) {}

  int64_t rows() const { return rows_; }
  const float* KRow(int64_t r) const { return pages_[r / kKvPageRows]->k() + (r % kKvPageRows) * C_; }
  const float* VRow(int64_t r) const { return pages_[r / kKvPageRows]->v() + (r % kKvPageRows) * C_; }
  // Appends rows [b, e) to `out` as spans cut at page boundaries.
  void Spans(int64_t b, int64_t e, std::vector<KvSpan>* out) const;

  // Appends T rows (k, v [T, C]); copies a shared last page before writing into it.
  void Append(const float* k, const float* v, int64_t T);
  // Replaces the contents with `rows` rows (fresh pages; shared ones are let go).
  void Assign(const float* k, const float* v, int64_t rows);
  // Copies rows [b, e) out, contiguous [e - b, C]; either pointer may be null.
  void Gather(int64_t b, int64_t e, float* k, float* v) const;

  // A copy sharing every page (O(pages) pointer copies).
  KvPages Share() const { return *this; }
  // Bytes of every page this store holds, shared or not (the session's own view).
  size_t Bytes() const;
  size_t PageCount() const { return pages_.size(); }
  // Pages also held by another store.
  size_t SharedPages() const;
  // Whether the last page is also held by another store (the next Append copies it first
  // when it is partly filled).
  bool LastPageShared() const { return !pages_.empty() && pages_.back().use_count() > 1; }

 private:
  int64_t C_ = 0;
  int64_t rows_ = 0;
  std::vector<std::shared_ptr<KvPage>> pages_;
  std::shared_ptr<KvPageAccount> account_;
};

}  // namespace rwkvx::cpu
