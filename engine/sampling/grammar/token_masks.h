// Per-node token tables of a grammar over a vocabulary, computed lazily and cached.
//
// For a node n (with byte edges) of rule R, walking the vocabulary trie from the stack
// [n] alone sorts every token into one of three sets:
//   accepted:  its bytes can be consumed inside R (ending anywhere, R's end included),
//              so it is allowed whatever stack lies below [n];
//   uncertain: not accepted, but some path leaves R with bytes still to consume: allowed
//              or not depending on the stack below (the matcher checks these one by one);
//   rejected:  everything else.
// The tables depend only on R and what R calls, so they are keyed by the rule's canonical
// key (grammar_keys.h) and shared by all grammars with that rule through the
// vocabulary's RuleMaskCache.
//
// TokenGrammar (a Grammar bound to a TokenVocabulary) is immutable apart from the lazy
// tables, which are computed once under std::call_once: share it across threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sampling/grammar/grammar.h"
#include "engine/sampling/grammar/vocabulary.h"

namespace rwkvx::grammar {

struct NodeMasks {
  std::vector<uint32_t> accepted_words;  // a full mask, when many tokens are accepted
  std::vector<int32_t> accepted_ids;     // otherwise the ids
  std::vector<int32_t> uncertain;
  size_t num_accepted = 0;
  size_t Bytes() const {
    return accepted_words.size() * 4 + accepted_ids.size() * 4 + uncertain.size() * 4 + sizeof(*this);
  }
};

// The tables of one rule (by canonical node index), each computed on first use.
class RuleMasks {
 public:
  explicit RuleMasks(int num_nodes);
  // Computes the table of `node` (canonical index `index`) of `g` on first use.
  const NodeMasks& Get(const Grammar& g, int32_t node, const TokenVocabulary& vocab);
  size_t Bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<std::once_flag[]> once_;
  std::vector<NodeMasks> masks_;
  std::atomic<size_t> bytes_{0};
};

// Rule key -> RuleMasks, evicting the oldest entries beyond a byte budget (an evicted
// table lives on while a TokenGrammar holds it). Thread-safe.
class RuleMaskCache {
 public:
  explicit RuleMaskCache(size_t budget_bytes) : budget_(budget_bytes) {}
  std::shared_ptr<RuleMasks> Get(const std::string& key, int num_nodes);
  size_t entries() const;
  size_t hits() const { return hits_.load(); }
  size_t misses() const { return misses_.load(); }

 private:
  mutable std::mutex mu_;
  size_t budget_;
  absl::flat_hash_map<std::string, std::shared_ptr<RuleMasks>> map_;
  std::deque<std::string> fifo_;
  std::atomic<size_t> hits_{0}, misses_{0};
};

// The table of one node, computed by walking the trie (exposed for tests and benches).
NodeMasks ComputeNodeMasks(const Grammar& g, int32_t node, const TokenVocabulary& vocab);

class TokenGrammar {
 public:
  static std::shared_ptr<const TokenGrammar> Bind(std::shared_ptr<const Grammar> g,
                                                  std::shared_ptr<const TokenVocabulary> vocab);
  const Grammar& grammar() const { return *g_; }
  const TokenVocabulary& vocab() const { return *vocab_; }
  const NodeMasks& Masks(int32_t node) const {
    return rules_[g_->nodes[node].rule]->Get(*g_, node, *vocab_);
  }

 private:
  std::shared_ptr<const Grammar> g_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  std::vector<std::shared_ptr<RuleMasks>> rules_;  // by rule
};

}  // namespace rwkvx::grammar
