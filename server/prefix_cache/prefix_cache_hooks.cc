// PrefixCacheHooks: the scheduler's use of the prefix state cache (prefix_cache_hooks.h).
#include "server/prefix_cache/prefix_cache_hooks.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "server/log.h"

namespace rwkvx {
namespace {

// With a backend memory budget, checkpoints never take the room of the next session (nor
// of a stored session being created or loaded, which does not look at the cache).
void KeepBackendRoom(const Backend& backend, PrefixCache& cache) {
  for (;;) {
    MemoryInfo m = backend.Memory();
    if (m.capacity_bytes == 0 || m.used_bytes + backend.MaxSessionBytes() <= m.capacity_bytes) return;
    if (!cache.EvictOne()) return;
  }
}

}  // namespace

PrefixCacheHooks::PrefixCacheHooks(Backend* backend, size_t budget_bytes, int min_tokens,
                                   int prefill_chunk, ServerMetrics* metrics)
    : backend_(backend), prefill_chunk_(static_cast<size_t>(std::max(1, prefill_chunk))) {
  if (budget_bytes == 0) return;
  PrefixCacheOptions po;
  po.budget_bytes = budget_bytes;
  po.min_tokens = min_tokens;
  po.prefill_chunk = prefill_chunk;
  po.split_invariant_tokens = SplitInvariantTokens(*backend_);
  cache_ = std::make_unique<PrefixCache>(backend_, po, metrics);
  SLOG(INFO) << "prefix cache: budget " << po.budget_bytes << " bytes, checkpoints from "
             << po.min_tokens << " tokens, any call split up to "
             << po.split_invariant_tokens << " tokens, beyond that only at multiples of "
             << po.prefill_chunk;
}

absl::StatusOr<PrefixCacheHooks::Started> PrefixCacheHooks::NewSession(
    const std::vector<int32_t>& prompt, int space, const SessionState* initial) {
  Started s;
  if (cache_) {
    if (auto hit = cache_->Lookup(prompt, &s.shared, space)) {
      s.sid = hit->session;
      s.start = hit->tokens;
      s.logits = std::move(hit->logits);
      return s;
    }
  }
  for (;;) {
    auto sid = initial ? backend_->ImportSession(*initial) : backend_->CreateSession();
    if (sid.ok()) {
      s.sid = *sid;
      return s;
    }
    if (!cache_ || !cache_->EvictOne()) return sid.status();
  }
}

bool PrefixCacheHooks::EvictOne() { return cache_ && cache_->EvictOne(); }

std::vector<size_t> PrefixCacheHooks::EvictionOrderBytes() const {
  return cache_ ? cache_->EvictionOrderBytes() : std::vector<size_t>{};
}

void PrefixCacheHooks::CheckpointPrompt(const std::vector<int32_t>& prompt, size_t start,
                                        size_t shared, size_t fed, SessionId sid,
                                        const float* logits, int space) {
  if (!cache_ || fed > prompt.size() || fed <= start) return;
  // The step planner cuts prompts on the grid of multiples of prefill_chunk (a hit off
  // the grid, which is below the split-invariant length, first feeds up to it). Started on
  // the grid = fed as the cold schedule feeds it.
  const size_t chunk = prefill_chunk_;
  const bool aligned = start % chunk == 0;
  auto put = [&](const float* l) {
    if (!cache_->Checkpointable(fed, aligned)) return;
    cache_->Insert(prompt.data(), fed, sid, l, space);
    KeepBackendRoom(*backend_, *cache_);
  };
  if (fed == prompt.size()) {
    if (logits) put(logits);  // with the logits: the same prompt again feeds nothing
    return;
  }
  if (fed % chunk != 0) return;
  // The last grid point before the end of the prompt: a checkpoint that serves any longer
  // prompt with this beginning, even past the split-invariant length (a chat that grows
  // past it keeps hitting).
  if (fed == (prompt.size() - 1) / chunk * chunk) {
    put(nullptr);
    return;
  }
  // The last grid point at or before where this prompt branches off a cached one (the end
  // of a shared system prompt, say): the next prompt sharing that beginning starts there.
  if (fed == shared / chunk * chunk) put(nullptr);
}

bool PrefixCacheHooks::KeepsPromptEndLogits(size_t prompt_size, size_t start) const {
  // CheckpointPrompt's put() at fed == prompt.size(), with the same inputs.
  return cache_ && prompt_size > start &&
         cache_->Checkpointable(prompt_size, start % static_cast<size_t>(prefill_chunk_) == 0);
}

bool PrefixCacheHooks::CheckpointAtFinish(const std::vector<int32_t>& feed, size_t fed,
                                          SessionId sid, FinishReason reason, int space) {
  if (!cache_ || sid == 0) return false;
  // After an error the state may be inconsistent; at shutdown nobody will look it up.
  if (reason == FinishReason::kError || reason == FinishReason::kShutdown) return false;
  // The generated tokens went through decode calls, not the cold schedule of a prompt
  // that contains them: only a split-invariant length qualifies.
  if (!cache_->Checkpointable(fed, /*aligned_prompt=*/false)) return false;
  cache_->Adopt(feed.data(), fed, sid, nullptr, space);
  KeepBackendRoom(*backend_, *cache_);
  return true;
}

}  // namespace rwkvx
