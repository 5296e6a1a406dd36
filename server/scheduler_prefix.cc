// Scheduler: the prefix state cache's hooks (server/prefix_cache.h, docs/PREFIX_CACHE.md).
// Loop thread only. Requests continuing a stored session never use the cache (their
// state is the stored session's); plain requests look up their prompt at admission and
// leave checkpoints at the end of their prompt and at their end.
#include <memory>
#include <utility>

#include "server/log.h"
#include "server/prefix_cache.h"
#include "server/scheduler.h"

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

void Scheduler::MakePrefixCache() {
  if (opts_.prefix_cache_bytes == 0) return;
  PrefixCacheOptions po;
  po.budget_bytes = opts_.prefix_cache_bytes;
  po.min_tokens = opts_.prefix_cache_min_tokens;
  po.prefill_chunk = opts_.prefill_chunk;
  po.split_invariant_tokens = SplitInvariantTokens(*backend_);
  prefix_ = std::make_unique<PrefixCache>(backend_.get(), po, metrics_);
  SLOG(INFO) << "prefix cache: budget " << po.budget_bytes << " bytes, checkpoints from "
             << po.min_tokens << " tokens, any call split up to "
             << po.split_invariant_tokens << " tokens, beyond that only at multiples of "
             << po.prefill_chunk;
}

absl::StatusOr<SessionId> Scheduler::NewSession(const std::vector<int32_t>& prompt, size_t* fed,
                                                size_t* shared, std::vector<float>* logits) {
  *fed = 0;
  *shared = 0;
  if (prefix_) {
    if (auto hit = prefix_->Lookup(prompt, shared)) {
      *fed = hit->tokens;
      *logits = std::move(hit->logits);
      return hit->session;
    }
  }
  for (;;) {
    auto sid = backend_->CreateSession();
    if (sid.ok() || !prefix_ || !prefix_->EvictOne()) return sid;
  }
}

bool Scheduler::EvictPrefixCheckpoint() { return prefix_ && prefix_->EvictOne(); }

void Scheduler::CheckpointPrompt(const std::vector<int32_t>& prompt, size_t start, size_t shared,
                                 size_t fed, SessionId sid, const float* logits) {
  if (!prefix_ || fed > prompt.size() || fed <= start) return;
  // RunStep cuts prompts on the grid of multiples of prefill_chunk (a hit off the grid,
  // which is below the split-invariant length, first feeds up to it). Started on the grid
  // = fed as the cold schedule feeds it.
  const size_t chunk = static_cast<size_t>(opts_.prefill_chunk);
  const bool aligned = start % chunk == 0;
  auto put = [&](const float* l) {
    if (!prefix_->Checkpointable(fed, aligned)) return;
    prefix_->Insert(prompt.data(), fed, sid, l);
    KeepBackendRoom(*backend_, *prefix_);
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

bool Scheduler::CheckpointAtFinish(const std::vector<int32_t>& feed, size_t fed, SessionId sid,
                                   FinishReason reason) {
  if (!prefix_ || sid == 0) return false;
  // After an error the state may be inconsistent; at shutdown nobody will look it up.
  if (reason == FinishReason::kError || reason == FinishReason::kShutdown) return false;
  // The generated tokens went through decode calls, not the cold schedule of a prompt
  // that contains them: only a split-invariant length qualifies.
  if (!prefix_->Checkpointable(fed, /*aligned_prompt=*/false)) return false;
  prefix_->Adopt(feed.data(), fed, sid, nullptr);
  KeepBackendRoom(*backend_, *prefix_);
  return true;
}

}  // namespace rwkvx
