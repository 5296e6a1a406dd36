// The recognizer's byte step (frame_engine.h).
#include "engine/sampling/grammar/frame_engine.h"

#include <algorithm>

namespace rwkvx::grammar {

void FrameArena::Truncate(size_t n) {
  for (size_t i = n; i < frames_.size(); ++i) {
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(frames_[i].node)) << 32) |
                         static_cast<uint32_t>(frames_[i].parent);
    index_.erase(key);
  }
  if (n < frames_.size()) frames_.resize(n);
}

void FrameArena::Compact(const std::vector<std::vector<int32_t>*>& lists) {
  std::vector<int32_t> remap(frames_.size(), -1);
  for (const auto* list : lists) {
    for (int32_t f : *list) {
      while (f != kBottom && remap[f] == -1) {
        remap[f] = 0;  // reached
        f = frames_[f].parent;
      }
    }
  }
  std::vector<Frame> kept;
  index_.clear();
  for (size_t i = 0; i < frames_.size(); ++i) {
    if (remap[i] < 0) continue;
    Frame fr = frames_[i];
    if (fr.parent != kBottom) fr.parent = remap[fr.parent];  // parents come first
    remap[i] = static_cast<int32_t>(kept.size());
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(fr.node)) << 32) |
                         static_cast<uint32_t>(fr.parent);
    index_.emplace(key, remap[i]);
    kept.push_back(fr);
  }
  frames_ = std::move(kept);
  for (auto* list : lists) {
    for (int32_t& f : *list) f = remap[f];
  }
}

void Stepper::Expand(int32_t node, int32_t parent, StackSet* out) {
  while (true) {
    const GrammarNode& x = g_.nodes[node];
    for (uint32_t k = x.exp_begin; k < x.exp_end; ++k) {
      const Expansion& e = g_.expansions[k];
      int32_t f = parent;
      for (uint32_t c = e.chain_begin; c < e.chain_end; ++c) f = arena_->Intern(g_.chains[c], f);
      Add(arena_->Intern(e.top, f), out);
    }
    if (!x.pops) return;
    if (parent == kBottom) {
      out->complete = true;
      return;
    }
    node = arena_->node(parent);
    parent = arena_->parent(parent);
  }
}

void Stepper::Start(int32_t node, int32_t parent, StackSet* out) {
  out->tops.clear();
  out->complete = false;
  NewGeneration();
  Expand(node, parent, out);
}

void Stepper::Advance(const StackSet& in, uint8_t byte, StackSet* out) {
  out->tops.clear();
  out->complete = false;
  NewGeneration();
  for (int32_t f : in.tops) {
    const GrammarNode& x = g_.nodes[arena_->node(f)];
    for (uint32_t k = x.edge_begin; k < x.edge_end; ++k) {
      const ByteEdge& e = g_.edges[k];
      if (byte < e.lo) break;  // sorted and disjoint
      if (byte <= e.hi) {
        Expand(e.to, arena_->parent(f), out);
        break;
      }
    }
  }
}

bool Stepper::Accepts(int32_t frame, std::string_view bytes, StackSet* a, StackSet* b) {
  a->tops.assign(1, frame);
  a->complete = false;
  for (size_t i = 0; i < bytes.size(); ++i) {
    Advance(*a, static_cast<uint8_t>(bytes[i]), b);
    if (b->tops.empty()) return i + 1 == bytes.size() && b->complete;
    std::swap(a, b);
  }
  return true;
}

}  // namespace rwkvx::grammar
