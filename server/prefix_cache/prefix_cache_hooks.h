// PrefixCacheHooks: how the scheduler uses the prefix state cache (prefix_cache.h,
// docs/PREFIX_CACHE.md). Requests continuing a stored session never use the cache (their
// state is the stored session's); a plain request looks its prompt up when admitted
// (NewSession) and leaves checkpoints at the end of its prompt, where it branches off a
// cached one, at the last chunk boundary before the end of its prompt
// (CheckpointPrompt) and at its end (CheckpointAtFinish). With the cache off (budget 0)
// every call is a plain backend call or a no-op.
//
// Ownership: owned by the scheduler; owns the PrefixCache, hence every checkpoint
// session (freed by eviction or the destructor). The Backend must outlive it.
// Threads: not thread-safe; only the scheduler's loop thread calls it (like the Backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "server/prefix_cache/prefix_cache.h"
#include "server/request.h"

namespace rwkvx {

class ServerMetrics;

class PrefixCacheHooks {
 public:
  // `budget_bytes` 0 = the cache is off. `prefill_chunk`: the scheduler's grid.
  PrefixCacheHooks(Backend* backend, size_t budget_bytes, int min_tokens, int prefill_chunk,
                   ServerMetrics* metrics);

  struct Started {
    SessionId sid = 0;
    size_t start = 0;           // prompt tokens already in the session's state (a hit)
    size_t shared = 0;          // prompt tokens shared with a cached key
    std::vector<float> logits;  // the whole prompt was cached: the logits after it
  };
  // The session for a new request: a fork of the deepest usable checkpoint, or a fresh
  // session (evicting checkpoints while the backend has no room). `space`/`initial`: the
  // request's initial state (server/initial_states.h): its own checkpoints, and a fresh
  // session starts from `initial` (null: zeros).
  absl::StatusOr<Started> NewSession(const std::vector<int32_t>& prompt, int space = 0,
                                     const SessionState* initial = nullptr);

  bool EvictOne();  // the least recently used checkpoint; false when none (or off)
  std::vector<size_t> EvictionOrderBytes() const;  // PrefixCache::EvictionOrderBytes

  // After a step fed a plain request up to `fed` tokens, all of them prompt: a checkpoint
  // if `fed` is one of the places above. `start`/`shared`: from NewSession. `logits`
  // (may be null): the logits after token fed-1.
  void CheckpointPrompt(const std::vector<int32_t>& prompt, size_t start, size_t shared,
                        size_t fed, SessionId sid, const float* logits, int space = 0);
  // True when CheckpointPrompt at the end of this prompt (fed == prompt_size, started at
  // `start`) would keep the logits row with the checkpoint: only then does the prompt's
  // last row have to reach the host (else its first token may be drawn on the device).
  bool KeepsPromptEndLogits(size_t prompt_size, size_t start) const;
  // A plain request ended: true if the cache adopted `sid` (state of feed[0, fed)); else
  // the caller frees it.
  bool CheckpointAtFinish(const std::vector<int32_t>& feed, size_t fed, SessionId sid,
                          FinishReason reason, int space = 0);

 private:
  Backend* backend_;
  size_t prefill_chunk_;
  std::unique_ptr<PrefixCache> cache_;  // null when off
};

}  // namespace rwkvx
