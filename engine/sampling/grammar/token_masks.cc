// Per-node token tables (token_masks.h): the trie walk, the lazy slots, the cache.
#include "engine/sampling/grammar/token_masks.h"

#include "engine/sampling/grammar/frame_engine.h"

namespace rwkvx::grammar {

NodeMasks ComputeNodeMasks(const Grammar& g, int32_t node, const TokenVocabulary& vocab) {
  const auto& trie = vocab.trie();
  const auto& ids = vocab.ids();
  FrameArena arena;
  std::vector<uint32_t> marks;
  uint32_t gen = 0;
  Stepper step(g, &arena, &marks, &gen);
  std::vector<StackSet> level(vocab.max_depth() + 1);
  std::vector<char> left(vocab.max_depth() + 1, 0);  // left the rule at this depth or above
  level[0].tops.push_back(arena.Intern(node, kBottom));
  std::vector<uint32_t> words(vocab.mask_words(), 0);
  NodeMasks m;
  auto accept = [&](const TokenVocabulary::TrieNode& t) {
    for (uint32_t k = t.ids_begin; k < t.ids_end; ++k) {
      words[ids[k] >> 5] |= 1u << (ids[k] & 31);
      ++m.num_accepted;
    }
  };
  auto uncertain = [&](const TokenVocabulary::TrieNode& t) {
    m.uncertain.insert(m.uncertain.end(), ids.begin() + t.ids_begin, ids.begin() + t.ids_end);
  };
  for (size_t i = 0; i < trie.size();) {
    const auto& t = trie[i];
    const int d = t.depth;
    StackSet& cur = level[d];
    step.Advance(level[d - 1], t.byte, &cur);
    const bool alive = !cur.tops.empty();
    const bool left_here = left[d - 1] || cur.complete;
    if (alive || cur.complete) {
      accept(t);
    } else if (left[d - 1]) {
      uncertain(t);
    }
    if (!alive) {
      if (left_here) {
        for (int32_t j = static_cast<int32_t>(i) + 1; j < t.skip; ++j) uncertain(trie[j]);
      }
      i = t.skip;
      continue;
    }
    left[d] = left_here;
    ++i;
  }
  if (m.num_accepted * 8 > words.size()) {  // denser than a list of ids would be
    m.accepted_words = std::move(words);
  } else {
    for (size_t w = 0; w < words.size(); ++w) {
      for (uint32_t bits = words[w]; bits; bits &= bits - 1) {
        m.accepted_ids.push_back(static_cast<int32_t>(w * 32 + __builtin_ctz(bits)));
      }
    }
  }
  return m;
}

RuleMasks::RuleMasks(int num_nodes) : once_(new std::once_flag[num_nodes]), masks_(num_nodes) {}

const NodeMasks& RuleMasks::Get(const Grammar& g, int32_t node, const TokenVocabulary& vocab) {
  const int32_t index = g.canonical_index[node];
  std::call_once(once_[index], [&] {
    masks_[index] = ComputeNodeMasks(g, node, vocab);
    bytes_.fetch_add(masks_[index].Bytes(), std::memory_order_relaxed);
  });
  return masks_[index];
}

std::shared_ptr<RuleMasks> RuleMaskCache::Get(const std::string& key, int num_nodes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(key);
  if (it != map_.end()) {
    ++hits_;
    return it->second;
  }
  ++misses_;
  size_t total = 0;
  for (const auto& [k, v] : map_) total += v->Bytes() + k.size();
  while (total > budget_ && !fifo_.empty()) {
    auto old = map_.find(fifo_.front());
    if (old != map_.end()) {
      total -= old->second->Bytes() + old->first.size();
      map_.erase(old);
    }
    fifo_.pop_front();
  }
  auto masks = std::make_shared<RuleMasks>(num_nodes);
  map_.emplace(key, masks);
  fifo_.push_back(key);
  return masks;
}

size_t RuleMaskCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

std::shared_ptr<const TokenGrammar> TokenGrammar::Bind(std::shared_ptr<const Grammar> g,
                                                      std::shared_ptr<const TokenVocabulary> vocab) {
  auto tg = std::shared_ptr<TokenGrammar>(new TokenGrammar());
  tg->g_ = std::move(g);
  tg->vocab_ = std::move(vocab);
  for (size_t r = 0; r < tg->g_->rules.size(); ++r) {
    tg->rules_.push_back(tg->vocab_->cache().Get(tg->g_->rule_keys[r], tg->g_->rules[r].num_nodes));
  }
  return tg;
}

}  // namespace rwkvx::grammar
