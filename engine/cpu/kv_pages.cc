#include "engine/cpu/kv_pages.h"

#include <algorithm>
#include <cstring>

namespace rwkvx::cpu {

KvPage::KvPage(int64_t C, std::shared_ptr<KvPageAccount> account)
    : C_(C), data_(new float[2 * kKvPageRows * C]), account_(std::move(account)) {
  if (account_) {
    account_->pages.fetch_add(1);
    account_->bytes.fetch_add(static_cast<int64_t>(Bytes()));
  }
}

KvPage::~KvPage() {
  if (account_) {
    account_->pages.fetch_sub(1);
    account_->bytes.fetch_sub(static_cast<int64_t>(Bytes()));
  }
}

void KvPages::Spans(int64_t b, int64_t e, std::vector<KvSpan>* out) const {
  while (b < e) {
    const int64_t p = b / kKvPageRows, o = b % kKvPageRows;
    const int64_t n = std::min(e - b, kKvPageRows - o);
    out->push_back({pages_[p]->k() + o * C_, pages_[p]->v() + o * C_, n});
    b += n;
  }
}

void KvPages::Append(const float* k, const float* v, int64_t T) {
  const size_t row_bytes = C_ * sizeof(float);
  while (T > 0) {
    const int64_t o = rows_ % kKvPageRows;
    if (o == 0) {
      pages_.push_back(std::make_shared<KvPage>(C_, account_));
    } else if (pages_.back().use_count() > 1) {
      // Copy-on-write: the partly filled last page is shared with another session.
      auto copy = std::make_shared<KvPage>(C_, account_);
      std::memcpy(copy->k(), pages_.back()->k(), o * row_bytes);
      std::memcpy(copy->v(), pages_.back()->v(), o * row_bytes);
      pages_.back() = std::move(copy);
    }
    const int64_t n = std::min(T, kKvPageRows - o);
    KvPage& pg = *pages_.back();
    std::memcpy(pg.k() + o * C_, k, n * row_bytes);
    std::memcpy(pg.v() + o * C_, v, n * row_bytes);
    k += n * C_;
    v += n * C_;
    T -= n;
    rows_ += n;
  }
}

void KvPages::Assign(const float* k, const float* v, int64_t rows) {
  pages_.clear();
  rows_ = 0;
  Append(k, v, rows);
}

void KvPages::Gather(int64_t b, int64_t e, float* k, float* v) const {
  std::vector<KvSpan> spans;
  Spans(b, e, &spans);
  const size_t row_bytes = C_ * sizeof(float);
  for (const auto& s : spans) {
    if (k) std::memcpy(k, s.k, s.rows * row_bytes), k += s.rows * C_;
    if (v) std::memcpy(v, s.v, s.rows * row_bytes), v += s.rows * C_;
  }
}

size_t KvPages::Bytes() const {
  return pages_.size() * 2 * kKvPageRows * C_ * sizeof(float);
}

size_t KvPages::SharedPages() const {
  size_t n = 0;
  for (const auto& p : pages_) n += p.use_count() > 1;
  return n;
}

}  // namespace rwkvx::cpu
