// PrefixCache: a radix tree over token-id prefixes whose nodes may hold a checkpoint, a
// backend session frozen at that token boundary (a Backend::ForkSession copy: the RWKV
// state is copied, sparse KV pages are shared copy-on-write where the backend can). A new
// request that extends a cached prefix forks the deepest usable checkpoint and prefills
// only the rest. LRU eviction under a byte budget. docs/PREFIX_CACHE.md has the rules.
//
// Exactness (why a hit gives the bits of a cold run; docs/PREFIX_CACHE.md):
// - "cold run" = the scheduler's schedule for the request without the cache: the prompt
//   fed from token 0 in calls of `prefill_chunk` tokens (a last single token goes through
//   the decode path), then one decode call per generated token.
// - `split_invariant_tokens` (S): any way of cutting the first S tokens of a sequence into
//   calls gives bit-identical state and logits (the CPU engine below the full-attention
//   threshold and the compression trigger; SplitInvariantTokens below).
// - A checkpoint at depth P is kept only if P <= S (any feeding), or P is a multiple of
//   prefill_chunk and the tokens [0, P) were fed as prompt chunks aligned to 0 (the cold
//   schedule's own state at P).
// - A checkpoint at depth P serves a prompt of L tokens if P < L (or P == L and it holds
//   the logits after token L), and L <= S or P % prefill_chunk == 0.
//
// Threads: owned by the scheduler loop thread, which alone calls it (like the Backend).
// The checkpoint sessions belong to the cache and are freed by eviction, Clear() or the
// destructor; the Backend must outlive the cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "engine/backend.h"

namespace rwkvx {

class ServerMetrics;

struct PrefixCacheOptions {
  size_t budget_bytes = 0;  // bytes of all checkpoints (state + KV as the backend counts a
                            // session alone, + stored logits); 0 = the cache is off
  int min_tokens = 16;      // shorter prefixes get no checkpoint
  long long split_invariant_tokens = 0;  // S above
  int prefill_chunk = 128;               // the scheduler's prefill_chunk
};

// The S of a backend and its model: the CPU engine (tested split-invariant, bit for bit)
// up to min(full-attention threshold, compression trigger) when the model has sparse
// blocks (no limit without them, or with full prefill and full decode and no
// compression); 0 for any other backend (only schedule-aligned checkpoints then).
long long SplitInvariantTokens(const Backend& backend);

struct PrefixCacheStats {
  long long hits = 0, misses = 0, saved_tokens = 0, inserts = 0, evictions = 0;
  size_t bytes = 0;
  size_t entries = 0;
};

class PrefixCache {
 public:
  // `metrics` may be null (tests); otherwise it must outlive the cache.
  PrefixCache(Backend* backend, PrefixCacheOptions opts, ServerMetrics* metrics);
  ~PrefixCache();  // frees every checkpoint session
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  struct Hit {
    SessionId session = 0;      // a fork of the checkpoint, owned by the caller
    size_t tokens = 0;          // prompt tokens [0, tokens) already in that state
    std::vector<float> logits;  // [V] after token `tokens`-1; set iff tokens == prompt size
  };
  // The deepest usable checkpoint for `prompt`, forked for the caller; nullopt on a miss
  // (also when the fork fails). Counts a hit or a miss. `shared` (may be null) receives
  // the longest prefix `prompt` shares with any cached key: where it branches off, the
  // place for a checkpoint that the next prompt with the same beginning can use.
  // `space`: which tree (an initial state's number, server/initial_states.h; 0 = sessions
  // that start from zeros): checkpoints of different spaces never serve each other.
  std::optional<Hit> Lookup(const std::vector<int32_t>& prompt, size_t* shared = nullptr, int space = 0);

  // Whether a state of `n` tokens fed so may be checkpointed: `aligned_prompt` = the
  // tokens were fed as prompt chunks aligned to 0 (see the exactness rule above).
  bool Checkpointable(size_t n, bool aligned_prompt) const;

  // Makes a checkpoint of tokens [0, n) from `session`, whose state is exactly those
  // tokens. `logits` [V] (may be null): the logits after token n-1. Insert forks the
  // session (the caller keeps it); Adopt takes it over (the cache frees it when it is not
  // kept: already cached, too short, or larger than the budget). The caller must have
  // checked Checkpointable(). An existing checkpoint of the same prefix is only touched.
  void Insert(const int32_t* tokens, size_t n, SessionId session, const float* logits, int space = 0);
  void Adopt(const int32_t* tokens, size_t n, SessionId session, const float* logits, int space = 0);

  // Evicts the least recently used checkpoint; false when there is none.
  bool EvictOne();
  // The backend bytes of each checkpoint (Backend::SessionBytes), in the order EvictOne
  // evicts them: what admission may count on getting back (less where KV pages are shared).
  std::vector<size_t> EvictionOrderBytes() const;
  void Clear();

  const PrefixCacheStats& stats() const { return stats_; }
  const PrefixCacheOptions& options() const { return opts_; }
  size_t NodeCount() const;  // tree nodes (tests: pruning keeps the tree small)

 private:
  struct Node;
  void Place(const int32_t* tokens, size_t n, SessionId session, bool adopt, const float* logits,
             int space);
  Node* Root(int space);  // made on first use
  Node* FindOrMake(const int32_t* tokens, size_t n, int space);
  void Drop(Node* node);       // frees the checkpoint, prunes the path
  void Prune(Node* node);      // removes empty leaves and merges single-child nodes
  void Touch(Node* node);
  void Publish();              // stats -> metrics gauges

  Backend* backend_;
  PrefixCacheOptions opts_;
  ServerMetrics* metrics_;
  std::map<int, std::unique_ptr<Node>> roots_;  // one tree per space
  std::list<Node*> lru_;  // checkpoint nodes, most recently used first
  PrefixCacheStats stats_;
};

}  // namespace rwkvx
