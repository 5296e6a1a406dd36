// GrammarMatcher (matcher.h).
#include "engine/sampling/grammar/matcher.h"

#include <algorithm>
#include <cstring>

namespace rwkvx::grammar {
GrammarMatcher::GrammarMatcher(std::shared_ptr<const TokenGrammar> tg, const MatcherOptions& opts)
    : tg_(std::move(tg)), opts_(opts) {
  const Grammar& g = tg_->grammar();
  stepper().Start(g.rules[g.root].start, kBottom, &state_);
  std::sort(state_.tops.begin(), state_.tops.end());
}

bool GrammarMatcher::Step(std::string_view bytes, StackSet* out) {
  StackSet* a = &scratch_a_;
  *a = state_;
  Stepper st = stepper();
  for (size_t i = 0; i < bytes.size(); ++i) {
    st.Advance(*a, static_cast<uint8_t>(bytes[i]), out);
    if (out->tops.empty() && !(out->complete && i + 1 == bytes.size())) return false;
    if (i + 1 < bytes.size()) std::swap(*a, *out);
  }
  std::sort(out->tops.begin(), out->tops.end());
  return true;
}

void GrammarMatcher::Commit(StackSet next, bool terminated) {
  history_.push_back({std::move(state_), terminated_});
  while (history_.size() > static_cast<size_t>(std::max(0, opts_.max_rollback))) history_.pop_front();
  state_ = std::move(next);
  terminated_ = terminated;
  MaybeCompact();
}

bool GrammarMatcher::Accept(int32_t token) {
  if (terminated_) return false;
  if (token == 0) {
    if (!state_.complete) return false;
    Commit(StackSet(), true);
    return true;
  }
  const std::string_view bytes = tg_->vocab().token_bytes(token);
  if (bytes.empty()) return false;
  StackSet next;
  if (!Step(bytes, &next)) return false;
  Commit(std::move(next), false);
  return true;
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) {
  if (terminated_) return false;
  StackSet next;
  if (bytes.empty()) {
    next = state_;
  } else if (!Step(bytes, &next)) {
    return false;
  }
  Commit(std::move(next), false);
  return true;
}

bool GrammarMatcher::IsAllowed(int32_t token) {
  if (terminated_) return false;
  if (token == 0) return state_.complete;
  const std::string_view bytes = tg_->vocab().token_bytes(token);
  if (bytes.empty()) return false;
  const size_t mark = arena_.size();
  StackSet out;
  const bool ok = Step(bytes, &out);
  arena_.Truncate(mark);
  return ok;
}

bool GrammarMatcher::Rollback(int n) {
  if (n < 0 || static_cast<size_t>(n) > history_.size()) return false;
  if (n == 0) return true;
  Snapshot s = std::move(history_[history_.size() - n]);
  history_.resize(history_.size() - n);
  state_ = std::move(s.state);
  terminated_ = s.terminated;
  return true;
}

void GrammarMatcher::MaybeCompact() {
  if (arena_.size() < compact_at_) return;
  std::vector<std::vector<int32_t>*> lists = {&state_.tops};
  for (auto& h : history_) lists.push_back(&h.state.tops);
  arena_.Compact(lists);
  for (auto* l : lists) std::sort(l->begin(), l->end());
  mask_cache_.clear();
  compact_at_ = std::max<size_t>(4096, arena_.size() * 4);
}

void GrammarMatcher::FillMask(uint32_t* words) {
  const TokenVocabulary& vocab = tg_->vocab();
  const size_t nw = vocab.mask_words();
  ++stats_.masks;
  if (terminated_) {
    std::memset(words, 0, nw * 4);
    return;
  }
  for (auto it = mask_cache_.begin(); it != mask_cache_.end(); ++it) {
    if (it->complete == state_.complete && it->tops == state_.tops) {
      std::memcpy(words, it->words.data(), nw * 4);
      ++stats_.cached_masks;
      return;
    }
  }
  std::memset(words, 0, nw * 4);
  // Context-free part: the accepted tokens of each distinct top node.
  std::vector<int32_t> nodes;
  for (int32_t f : state_.tops) nodes.push_back(arena_.node(f));
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  for (int32_t n : nodes) {
    const NodeMasks& m = tg_->Masks(n);
    if (!m.accepted_words.empty()) {
      for (size_t w = 0; w < nw; ++w) words[w] |= m.accepted_words[w];
    } else {
      for (int32_t id : m.accepted_ids) words[id >> 5] |= 1u << (id & 31);
    }
  }
  // Context-dependent part: uncertain tokens, checked on each full stack.
  const size_t mark = arena_.size();
  Stepper st = stepper();
  StackSet a, b;
  const uint64_t checks_before = stats_.uncertain_checks;
  for (int32_t f : state_.tops) {
    const NodeMasks& m = tg_->Masks(arena_.node(f));
    for (int32_t id : m.uncertain) {
      if (words[id >> 5] & (1u << (id & 31))) continue;
      ++stats_.uncertain_checks;
      if (st.Accepts(f, vocab.token_bytes(id), &a, &b)) words[id >> 5] |= 1u << (id & 31);
    }
  }
  arena_.Truncate(mark);
  if (state_.complete) words[0] |= 1u;
  // Worth keeping only when it took checks (copying the words costs about as much as
  // OR-ing a few cached tables).
  if (opts_.mask_cache_entries <= 0 || stats_.uncertain_checks == checks_before) return;
  mask_cache_.push_front({state_.tops, state_.complete, std::vector<uint32_t>(words, words + nw)});
  if (mask_cache_.size() > static_cast<size_t>(opts_.mask_cache_entries)) mask_cache_.pop_back();
}

}  // namespace rwkvx::grammar
