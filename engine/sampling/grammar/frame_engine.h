// Private to engine/sampling/grammar: the pushdown recognizer's state and its byte step,
// shared by the matcher (matcher.h) and the mask precomputation (token_masks.cc).
//
// A stack is a chain of interned frames (node, parent frame); equal stacks are the same
// frame id, so a state (a set of stacks) is a small vector of ints. A FrameArena and the
// Stepper working on it belong to one owner (a matcher or one precomputation) and one
// thread at a time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/sampling/grammar/grammar.h"

namespace rwkvx::grammar {

constexpr int32_t kBottom = -1;  // the parent of an outermost frame

class FrameArena {
 public:
  int32_t Intern(int32_t node, int32_t parent) {
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(node)) << 32) |
                         static_cast<uint32_t>(parent);
    auto [it, inserted] = index_.try_emplace(key, static_cast<int32_t>(frames_.size()));
    if (inserted) frames_.push_back({node, parent});
    return it->second;
  }
  int32_t node(int32_t f) const { return frames_[f].node; }
  int32_t parent(int32_t f) const { return frames_[f].parent; }
  size_t size() const { return frames_.size(); }
  // Forgets the frames from id `n` on (made since size() was n).
  void Truncate(size_t n);
  // Keeps only the frames the given id lists reach (through parents) and renumbers them,
  // rewriting the lists. Ids keep their relative order.
  void Compact(const std::vector<std::vector<int32_t>*>& lists);

 private:
  struct Frame {
    int32_t node, parent;
  };
  std::vector<Frame> frames_;
  absl::flat_hash_map<uint64_t, int32_t> index_;
};

// A recognizer state: the stacks' top frames (each top node has byte edges), and whether
// some stack completed its outermost rule (for a matcher: the grammar may end here; for
// the precomputation: the rule was left).
struct StackSet {
  std::vector<int32_t> tops;
  bool complete = false;
};

class Stepper {
 public:
  Stepper(const Grammar& g, FrameArena* arena, std::vector<uint32_t>* marks, uint32_t* gen)
      : g_(g), arena_(arena), marks_(marks), gen_(gen) {}
  // The state at `node` (a rule start or return node) with the given parent frame.
  void Start(int32_t node, int32_t parent, StackSet* out);
  // One byte from `in` into `out` (which must not alias `in`). `out` is empty with
  // complete == false when no stack can take the byte.
  void Advance(const StackSet& in, uint8_t byte, StackSet* out);
  // Every byte of `bytes` from the single stack `frame`: whether they are all taken.
  bool Accepts(int32_t frame, std::string_view bytes, StackSet* scratch_a, StackSet* scratch_b);

 private:
  void Expand(int32_t node, int32_t parent, StackSet* out);
  void Add(int32_t frame, StackSet* out) {
    if (marks_->size() <= static_cast<size_t>(frame)) marks_->resize(arena_->size() + 64, 0);
    if ((*marks_)[frame] != *gen_) {
      (*marks_)[frame] = *gen_;
      out->tops.push_back(frame);
    }
  }
  void NewGeneration() {
    if (++*gen_ == 0) {  // wrapped: clear
      std::fill(marks_->begin(), marks_->end(), 0);
      *gen_ = 1;
    }
  }

  const Grammar& g_;
  FrameArena* arena_;
  std::vector<uint32_t>* marks_;  // per frame: the generation that added it
  uint32_t* gen_;
};

}  // namespace rwkvx::grammar
