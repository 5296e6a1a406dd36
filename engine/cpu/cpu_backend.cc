// CpuBackend: the exact float32 reference engine behind engine::Backend.
#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/cpu/cpu_session.h"
#include "engine/cpu/forward.h"
#include "engine/cpu/kv_pages.h"
#include "engine/cpu/ops.h"

namespace rwkvx {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const Model> model, const CpuBackendOptions& opts)
      : model_(std::move(model)), opts_(opts) {
    if (opts.threads > 0) cpu::SetNumThreads(opts.threads);
    // Our pool parallelises across heads and blocks and calls BLAS from inside its jobs;
    // OpenBLAS's own threads on top would oversubscribe the cores and spin.
    openblas_set_num_threads(1);
    for (const auto& b : model_->rwkv) lora_.push_back(cpu::TransposeLora(b, model_->shape));
    rwkv_half_.resize(model_->rwkv.size());
    attn_half_.resize(model_->attn_blocks.size());
    if (opts.half_weights) {
      for (size_t i = 0; i < model_->rwkv.size(); ++i) rwkv_half_[i] = cpu::ToHalf(model_->rwkv[i]);
      for (size_t j = 0; j < model_->attn_blocks.size(); ++j) attn_half_[j] = cpu::ToHalf(model_->attn_blocks[j]);
      head_half_ = cpu::ToHalf(model_->head);
    }
    fixed_zero_ = cpu::CpuSession::FromState(SessionState::Zero(model_->shape), model_->shape.n_embd, nullptr).Bytes();
  }

  std::string Name() const override { return "cpu"; }
  bool SplitInvariant() const override { return true; }  // fixed-order reductions (docs/PREFIX_CACHE.md)
  const Model& model() const override { return *model_; }

  absl::StatusOr<SessionId> CreateSession() override {
    cpu::CpuSession st = cpu::CpuSession::FromState(SessionState::Zero(model_->shape), model_->shape.n_embd, pages_);
    if (auto s = CheckBudget(st.FixedBytes()); !s.ok()) return s;
    const SessionId id = next_id_++;
    fixed_ += st.FixedBytes();
    sessions_.emplace(id, std::move(st));
    return id;
  }

  absl::Status FreeSession(SessionId id) override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
    fixed_ -= it->second.FixedBytes();
    sessions_.erase(it);  // pages no other session holds are freed here
    return absl::OkStatus();
  }

  absl::StatusOr<SessionState> ExportSession(SessionId id) const override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
    return it->second.ToState();
  }

  absl::StatusOr<SessionId> ImportSession(const SessionState& state) override {
    if (auto st = CheckShape(state); !st.ok()) return st;
    cpu::CpuSession s = cpu::CpuSession::FromState(state, model_->shape.n_embd, pages_);
    const SessionId id = next_id_++;
    fixed_ += s.FixedBytes();
    sessions_.emplace(id, std::move(s));
    return id;
  }

  // Copies the RWKV state and shares every KV page; the first write to a shared, partly
  // filled last page copies that page (engine/cpu/kv_pages.h). The budget must fit the
  // copy plus one page per sparse block.
  absl::StatusOr<SessionId> ForkSession(SessionId id) override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
    if (auto s = CheckBudget(it->second.FixedBytes() + it->second.attn.size() * PageBytes()); !s.ok()) return s;
    cpu::CpuSession child = it->second.Fork();
    const SessionId cid = next_id_++;
    fixed_ += child.FixedBytes();
    sessions_.emplace(cid, std::move(child));
    return cid;
  }

  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    const Model& m = *model_;
    const int64_t C = m.shape.n_embd, V = m.shape.vocab;
    std::vector<cpu::SeqSlice> seqs;
    int64_t ntot = 0;
    for (const auto& it : items) {
      auto s = sessions_.find(it.session);
      if (s == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", it.session));
      if (it.tokens.empty()) return absl::InvalidArgumentError("step item with no tokens");
      for (int32_t t : it.tokens)
        if (t < 0 || t >= V)
          return absl::InvalidArgumentError(absl::StrCat("token id ", t, " outside [0, ", V, ")"));
      for (const auto& q : seqs)
        if (q.state == &s->second) return absl::InvalidArgumentError("session appears twice in a step");
      seqs.push_back({&s->second, ntot, static_cast<int64_t>(it.tokens.size())});
      ntot += it.tokens.size();
    }
    for (const auto& q : seqs) fixed_ -= q.state->FixedBytes();
    std::vector<float> X(ntot * C), v_first(ntot * C);
    for (size_t i = 0; i < items.size(); ++i)
      for (size_t t = 0; t < items[i].tokens.size(); ++t)
        std::memcpy(&X[(seqs[i].row0 + t) * C], &m.emb[items[i].tokens[t] * C], C * sizeof(float));
    for (int b : m.order) {
      if (b >= 0)
        cpu::RwkvBlockForward(m, lora_[b], rwkv_half_[b], b, seqs, X.data(), v_first.data(), ntot);
      else
        cpu::AttnBlockForward(m, attn_half_[-b - 1], -b - 1, seqs, X.data(), ntot);
    }
    // Head: only for the last row of items that want logits.
    std::vector<float> rows;
    for (size_t i = 0; i < items.size(); ++i) {
      seqs[i].state->tokens_seen += items[i].tokens.size();
      fixed_ += seqs[i].state->FixedBytes();
      if (!items[i].want_logits) continue;
      const float* x = &X[(seqs[i].row0 + seqs[i].T - 1) * C];
      rows.resize(rows.size() + C);
      cpu::LayerNorm(x, m.ln_out_w.data(), m.ln_out_b.data(), rows.data() + rows.size() - C, C);
    }
    const int64_t nout = rows.size() / C;
    logits->assign(nout * V, 0.0f);
    if (nout > 0) cpu::Linear(rows.data(), cpu::Pick(head_half_, m.head), logits->data(), nout, V, C);
    return absl::OkStatus();
  }

  size_t SessionBytes(SessionId id) const override {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? 0 : it->second.Bytes();
  }
  size_t SessionKvTokens(SessionId id) const override {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? 0 : it->second.KvTokens();
  }
  MemoryInfo Memory() const override {
    MemoryInfo mi;
    mi.used_bytes = UsedBytes();
    mi.capacity_bytes = opts_.memory_budget_bytes;
    const auto& m = *model_;
    size_t w = m.emb.size() + m.head.size();
    for (const auto& b : m.rwkv)
      w += b.Wr.size() * 4 + b.ffn_key.size() + b.ffn_value.size() + b.w1.size() * 2 + b.a1.size() * 2 +
           b.v1.size() * 2 + b.g1.size() * 2;
    for (const auto& b : m.attn_blocks) w += b.Wq.size() * 4 + b.ffn_key.size() + b.ffn_value.size();
    mi.weights_bytes = w * sizeof(float);
    return mi;
  }
  size_t MaxSessionBytes() const override {
    // Compression bounds each sparse block's cache to max_kv_cache_size + one prefill chunk;
    // without compression there is no bound, so report the fixed part only.
    return model_->attn.max_kv_cache_size > 0 ? SessionBytesFor(SIZE_MAX) : SessionBytesFor(0);
  }
  // The fixed part (RWKV state, shift states) plus, per sparse block, whole KV pages of
  // min(kv_tokens, cap) rows and the chunk key sums of its complete chunks.
  size_t SessionBytesFor(size_t kv_tokens) const override {
    const auto& s = model_->shape;
    const auto& a = model_->attn;
    size_t rows = kv_tokens;
    if (a.max_kv_cache_size > 0) rows = std::min<size_t>(rows, a.max_kv_cache_size + a.Threshold());
    const size_t sums = rows / a.chunk_size * s.n_embd * sizeof(double);
    const size_t pages = (rows + cpu::kKvPageRows - 1) / cpu::kKvPageRows;
    return fixed_zero_ + s.n_attn_layer * (pages * PageBytes() + sums);
  }
  // New pages past the last one, a copy of a shared, partly filled last page, new chunk
  // sums. A block about to compress shrinks: it adds nothing.
  size_t StepBytes(SessionId id, size_t tokens) const override {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return 0;
    const auto& a = model_->attn;
    const size_t C = model_->shape.n_embd;
    size_t n = 0;
    for (const cpu::CpuAttnState& b : it->second.attn) {
      const size_t rows = static_cast<size_t>(b.kv.rows());
      if (a.max_kv_cache_size > 0 && rows > static_cast<size_t>(a.max_kv_cache_size)) continue;
      const size_t P = cpu::kKvPageRows;
      n += ((rows + tokens + P - 1) / P - (rows + P - 1) / P) * PageBytes();
      if (rows % P != 0 && b.kv.LastPageShared()) n += PageBytes();
      n += ((rows + tokens) / a.chunk_size - rows / a.chunk_size) * C * sizeof(double);
    }
    return n;
  }

 private:
  size_t PageBytes() const { return 2 * cpu::kKvPageRows * model_->shape.n_embd * sizeof(float); }
  // Each live KV page once (shared pages included once) plus every session's fixed part.
  size_t UsedBytes() const { return fixed_ + static_cast<size_t>(pages_->bytes.load()); }
  absl::Status CheckBudget(size_t extra) const {
    if (opts_.memory_budget_bytes && UsedBytes() + extra > opts_.memory_budget_bytes)
      return absl::ResourceExhaustedError("CPU backend memory budget exhausted");
    return absl::OkStatus();
  }

  absl::Status CheckShape(const SessionState& st) const {
    const auto& s = model_->shape;
    const size_t C = s.n_embd;
    if ((int)st.rwkv.size() != s.n_rwkv_layer || (int)st.attn.size() != s.n_attn_layer)
      return absl::InvalidArgumentError("session state does not match the model's block counts");
    for (const auto& l : st.rwkv)
      if (l.att_prev.size() != C || l.ffn_prev.size() != C ||
          l.wkv.size() != (size_t)s.n_head * s.head_size * s.head_size)
        return absl::InvalidArgumentError("session state RWKV layer has the wrong size");
    for (const auto& a : st.attn)
      if (a.ffn_prev.size() != C || a.ct < 0 || a.k.size() != a.ct * C || a.v.size() != a.ct * C)
        return absl::InvalidArgumentError("session state attention layer has the wrong size");
    return absl::OkStatus();
  }

  std::shared_ptr<const Model> model_;
  std::vector<cpu::RwkvLoraT> lora_;
  std::vector<cpu::HalfMats> rwkv_half_, attn_half_;  // empty unless half_weights
  std::vector<uint16_t> head_half_;
  CpuBackendOptions opts_;
  // Declared before sessions_ so that it outlives their pages (they hold it too).
  std::shared_ptr<cpu::KvPageAccount> pages_ = std::make_shared<cpu::KvPageAccount>();
  std::map<SessionId, cpu::CpuSession> sessions_;
  SessionId next_id_ = 1;
  size_t fixed_ = 0;  // sum of the sessions' FixedBytes()
  size_t fixed_zero_ = 0;  // FixedBytes of a session with no KV rows
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const Model> model, const CpuBackendOptions& opts) {
  return std::make_unique<CpuBackend>(std::move(model), opts);
}

}  // namespace rwkvx
