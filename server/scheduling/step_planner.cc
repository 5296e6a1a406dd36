#include "server/scheduling/step_planner.h"

#include <algorithm>

namespace rwkvx {
namespace {

size_t Chunk(int prefill_chunk) { return static_cast<size_t>(std::max(1, prefill_chunk)); }

bool Runnable(const Sequence& s, int prefill_chunk) {
  return !s.done && FeedLimit(s, prefill_chunk) > s.fed;
}

// Decoding: one token left, fed through the decode path; its logits give the next token.
bool Decoding(const Sequence& s) {
  return s.kind != SequenceKind::kSessionPrefill && s.feed.size() - s.fed == 1;
}

}  // namespace

size_t FeedLimit(const Sequence& s, int prefill_chunk) {
  if (s.kind != SequenceKind::kSessionPrefill) return s.feed.size();
  const size_t chunk = Chunk(prefill_chunk);
  return s.feed.empty() ? 0 : (s.feed.size() - 1) / chunk * chunk;
}

size_t NextChunk(const Sequence& s, int prefill_chunk) {
  if (!Runnable(s, prefill_chunk)) return 0;
  if (Decoding(s)) return 1;
  const size_t chunk = Chunk(prefill_chunk);
  return std::min(FeedLimit(s, prefill_chunk) - s.fed, chunk - s.fed % chunk);
}

size_t OutstandingBytes(const std::vector<const Sequence*>& seqs) {
  size_t n = 0;
  for (const Sequence* s : seqs) {
    if (!s->done && s->reserved_bytes > s->held_bytes) n += s->reserved_bytes - s->held_bytes;
  }
  return n;
}

AdmissionPlan PlanAdmission(const PlannerLimits& limits, int running,
                            const std::vector<WaitingRequest>& waiting, const MemoryView& mem) {
  AdmissionPlan plan;
  const size_t cap = mem.capacity_bytes;
  size_t committed = mem.used_bytes + mem.outstanding_bytes;
  for (size_t i = 0; i < waiting.size() && running + plan.admit < limits.max_running; ++i) {
    const WaitingRequest& w = waiting[i];
    if (cap > 0 && w.reserve_bytes > cap) {
      plan.refuse.push_back(i);  // never fits
      continue;
    }
    const size_t need = w.reserve_bytes - std::min(w.reserve_bytes, w.held_bytes);
    while (cap > 0 && committed + need > cap &&
           static_cast<size_t>(plan.evict_checkpoints) < mem.checkpoint_bytes.size()) {
      committed -= std::min(committed, mem.checkpoint_bytes[static_cast<size_t>(plan.evict_checkpoints)]);
      ++plan.evict_checkpoints;  // cached prefixes yield
    }
    if (cap > 0 && committed + need > cap && running + plan.admit > 0) return plan;  // waits
    committed += need;
    ++plan.admit;
  }
  return plan;
}

BatchPlan PlanBatch(const PlannerLimits& limits, const std::vector<const Sequence*>& seqs,
                    const MemoryView& mem, bool hold_prefill) {
  BatchPlan plan;
  std::vector<bool> out(seqs.size(), false);  // preempted
  if (mem.capacity_bytes > 0) {
    size_t used = mem.used_bytes, need = 0;
    size_t oldest = seqs.size();
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (!Runnable(*seqs[i], limits.prefill_chunk)) continue;
      need += seqs[i]->step_bytes;
      oldest = std::min(oldest, i);
    }
    for (size_t i = seqs.size(); i-- > 0 && used + need > mem.capacity_bytes;) {
      const Sequence& s = *seqs[i];
      if (i == oldest || !Runnable(s, limits.prefill_chunk)) continue;
      out[i] = true;
      plan.preempt.push_back(i);
      need -= s.step_bytes;
      if (s.kind == SequenceKind::kRequest) used -= std::min(used, s.held_bytes);
    }
  }
  int budget = limits.max_batch_tokens;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = *seqs[i];
    if (out[i] || !Runnable(s, limits.prefill_chunk) || !Decoding(s)) continue;
    plan.items.push_back(PlanItem{i, 1, true, s.device_sample});
    --budget;
  }
  bool any_prefill = false;
  if (hold_prefill && !plan.items.empty()) {
    for (const PlanItem& it : plan.items) plan.total_tokens += it.tokens;
    return plan;
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Sequence& s = *seqs[i];
    if (out[i] || !Runnable(s, limits.prefill_chunk) || Decoding(s)) continue;
    const int n = static_cast<int>(NextChunk(s, limits.prefill_chunk));
    if (n > budget && any_prefill) continue;  // waits; the step's first prefill always runs
    const bool ends_feed = s.fed + static_cast<size_t>(n) == s.feed.size();
    // A prompt's last chunk: its row sampled in the backend where the sequence may be.
    plan.items.push_back(PlanItem{i, n, ends_feed, ends_feed && s.device_sample});
    budget -= n;
    any_prefill = true;
  }
  for (const PlanItem& it : plan.items) plan.total_tokens += it.tokens;
  return plan;
}

std::vector<ItemResult> ApplyStepResult(const BatchPlan& plan, const std::vector<Sequence*>& seqs) {
  std::vector<ItemResult> results;
  results.reserve(plan.items.size());
  size_t row = 0, drawn = 0;
  for (const PlanItem& it : plan.items) {
    Sequence& s = *seqs[it.seq];
    ItemResult r;
    r.seq = it.seq;
    r.tokens = it.tokens;
    const size_t n = static_cast<size_t>(it.tokens);
    if (s.fed < s.prompt_len) r.prompt_tokens = std::min(n, s.prompt_len - s.fed);
    s.fed += n;
    r.checkpoint_prompt = s.kind == SequenceKind::kRequest && s.fed <= s.prompt_len;
    if (it.sample) {
      r.action = ItemAction::kTakeSampled;
      r.index = drawn++;
    } else {
      if (it.want_logits) {
        r.action = ItemAction::kSampleRow;
        r.index = row++;
      }
    }
    results.push_back(r);
  }
  return results;
}

}  // namespace rwkvx
