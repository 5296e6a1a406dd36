// GrammarMatcher: one generation's position in a grammar, advanced token by token, and
// the mask of the tokens allowed next (before sampling: a banned token's logit is -inf).
//
//   auto vocab = TokenVocabulary::Build(tokenizer);              // once per tokenizer
//   auto grammar = CompileJsonSchema(schema);                    // json_schema.h, or CompileGbnf
//   auto tg = TokenGrammar::Bind(*grammar, vocab);               // token_masks.h
//   GrammarMatcher m(tg);
//   m.FillMask(words);  sample a token t allowed by words;  m.Accept(t);  ...
//
// A mask has TokenVocabulary::mask_words() uint32 words; bit (id % 32) of word (id / 32)
// is set when token id is allowed: when all of its bytes can be consumed from the current
// state (a token may span several grammar symbols or end inside one, even inside a UTF-8
// character). The end-of-text token (id 0) is allowed exactly when IsComplete().
//
// A matcher is per session, used by one thread at a time; copying it is cheap (vectors
// of ints) and gives an independent matcher (fork). The TokenGrammar it holds is shared.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/sampling/grammar/frame_engine.h"
#include "engine/sampling/grammar/token_masks.h"

namespace rwkvx::grammar {

struct MatcherOptions {
  int max_rollback = 16;       // how many steps Rollback can undo (older history is dropped)
  int mask_cache_entries = 8;  // masks of recent states kept per matcher (mask_words() words each;
                               // only masks that needed context-dependent checks are kept)
};

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const TokenGrammar> tg, const MatcherOptions& opts = {});

  // Advances by one token. False (and no change) when the token is not allowed. After the
  // end-of-text token (id 0) the matcher is terminated and accepts nothing more.
  bool Accept(int32_t token);
  // Advances by raw bytes (forced text, tests); false and no change if not allowed. Counts
  // as one step for Rollback.
  bool AcceptBytes(std::string_view bytes);
  // Writes the allowed-token mask (mask_words() words; all zero once terminated).
  void FillMask(uint32_t* words);
  bool IsAllowed(int32_t token);  // one token, without a full mask

  bool IsComplete() const { return !terminated_ && state_.complete; }  // end of text allowed
  bool IsTerminated() const { return terminated_; }
  bool CanContinue() const { return !terminated_ && !state_.tops.empty(); }  // more bytes allowed
  // Undoes the last n steps (Accept / AcceptBytes). False (and no change) if fewer steps
  // are remembered.
  bool Rollback(int n);
  int steps_remembered() const { return static_cast<int>(history_.size()); }

  // Counters for tests and benches: masks served from the per-matcher cache, and
  // uncertain tokens checked one by one.
  struct Stats {
    uint64_t masks = 0, cached_masks = 0, uncertain_checks = 0;
  };
  const Stats& stats() const { return stats_; }
  const TokenGrammar& token_grammar() const { return *tg_; }

 private:
  struct Snapshot {
    StackSet state;
    bool terminated = false;
  };
  bool Step(std::string_view bytes, StackSet* out);
  void Commit(StackSet next, bool terminated);
  void MaybeCompact();
  Stepper stepper() { return Stepper(tg_->grammar(), &arena_, &marks_, &gen_); }

  std::shared_ptr<const TokenGrammar> tg_;
  MatcherOptions opts_;
  FrameArena arena_;
  std::vector<uint32_t> marks_;
  uint32_t gen_ = 0;
  StackSet state_;
  bool terminated_ = false;
  std::deque<Snapshot> history_;
  size_t compact_at_ = 4096;
  // Recent masks by state (frame ids are stable until a compaction, which clears it).
  struct CachedMask {
    std::vector<int32_t> tops;
    bool complete = false;
    std::vector<uint32_t> words;
  };
  std::deque<CachedMask> mask_cache_;
  StackSet scratch_a_, scratch_b_;
  Stats stats_;
};

}  // namespace rwkvx::grammar
