// The step planner (server/scheduling/step_planner.h) alone: no threads, no backend.
#include "server/scheduling/step_planner.h"

#include <vector>

#include "gtest/gtest.h"

namespace rwkvx {
namespace {

PlannerLimits Limits(int max_running, int max_batch_tokens, int prefill_chunk) {
  PlannerLimits l;
  l.max_running = max_running;
  l.max_batch_tokens = max_batch_tokens;
  l.prefill_chunk = prefill_chunk;
  return l;
}

// A sequence with `total` tokens to feed, `fed` of them fed; all prompt unless `prompt`.
Sequence Seq(size_t total, size_t fed, SequenceKind kind = SequenceKind::kRequest,
             size_t prompt = SIZE_MAX) {
  Sequence s;
  s.kind = kind;
  for (size_t i = 0; i < total; ++i) s.feed.push_back(static_cast<int32_t>(1 + i));
  s.fed = fed;
  s.prompt_len = prompt == SIZE_MAX ? total : prompt;
  return s;
}

std::vector<const Sequence*> View(const std::vector<Sequence>& seqs) {
  std::vector<const Sequence*> v;
  for (const Sequence& s : seqs) v.push_back(&s);
  return v;
}

std::vector<Sequence*> Mut(std::vector<Sequence>& seqs) {
  std::vector<Sequence*> v;
  for (Sequence& s : seqs) v.push_back(&s);
  return v;
}

MemoryView Mem(size_t capacity, size_t used, size_t outstanding = 0,
               std::vector<size_t> checkpoints = {}) {
  MemoryView m;
  m.capacity_bytes = capacity;
  m.used_bytes = used;
  m.outstanding_bytes = outstanding;
  m.checkpoint_bytes = std::move(checkpoints);
  return m;
}

std::vector<WaitingRequest> Waiting(size_t n, size_t reserve_bytes = 0, size_t held_bytes = 0) {
  return std::vector<WaitingRequest>(n, WaitingRequest{reserve_bytes, held_bytes});
}

// Runs a sequence to the end of what the planner feeds it, alone or after `others` in
// start order (so that it is never the step's first prefill), re-planned each step like
// the loop, and returns the token counts of its items.
std::vector<int> Cuts(Sequence s, const PlannerLimits& l, std::vector<Sequence> others = {}) {
  std::vector<int> cuts;
  others.push_back(std::move(s));
  const size_t me = others.size() - 1;
  for (int step = 0; step < 1000; ++step) {
    BatchPlan plan = PlanBatch(l, View(others), Mem(0, 0));
    for (const PlanItem& it : plan.items)
      if (it.seq == me) cuts.push_back(it.tokens);
    ApplyStepResult(plan, Mut(others));
    const Sequence& m = others[me];
    if (m.fed == m.feed.size() || PrefillComplete(m, l.prefill_chunk)) break;
    for (size_t i = 0; i < me; ++i) {  // decoders keep decoding
      if (others[i].fed == others[i].feed.size()) others[i].feed.push_back(7);
    }
  }
  return cuts;
}

// --- Admission -------------------------------------------------------------------------

TEST(StepPlannerAdmission, MaxRunningAndQueueOrder) {
  PlannerLimits l = Limits(4, 512, 8);
  EXPECT_EQ(PlanAdmission(l, 0, Waiting(10), Mem(0, 0)).admit, 4);
  EXPECT_EQ(PlanAdmission(l, 3, Waiting(10), Mem(0, 0)).admit, 1);
  EXPECT_EQ(PlanAdmission(l, 4, Waiting(10), Mem(0, 0)).admit, 0);
  EXPECT_EQ(PlanAdmission(l, 5, Waiting(10), Mem(0, 0)).admit, 0);  // over (done ones count)
  EXPECT_EQ(PlanAdmission(l, 1, Waiting(2), Mem(0, 0)).admit, 2);   // the queue runs out
  EXPECT_EQ(PlanAdmission(l, 0, {}, Mem(0, 0)).admit, 0);
}

TEST(StepPlannerAdmission, ReservationArithmetic) {
  PlannerLimits l = Limits(64, 512, 8);
  // 1000 capacity, 300 used, 200 still reserved by running sequences: 500 left; requests
  // of 150 each: three fit (450), the fourth waits (600 > 500).
  AdmissionPlan p = PlanAdmission(l, 1, Waiting(10, 150), Mem(1000, 300, 200));
  EXPECT_EQ(p.admit, 3);
  EXPECT_TRUE(p.refuse.empty());
  EXPECT_EQ(p.evict_checkpoints, 0);
  // Exactly full fits.
  EXPECT_EQ(PlanAdmission(l, 1, Waiting(10, 250), Mem(1000, 300, 200)).admit, 2);
  // What a stored session already holds is not reserved twice: 150 - 100 = 50 each.
  EXPECT_EQ(PlanAdmission(l, 1, Waiting(20, 150, 100), Mem(1000, 300, 200)).admit, 10);
  // Unbounded memory: only max_running counts.
  EXPECT_EQ(PlanAdmission(l, 1, Waiting(5, 1 << 30), Mem(0, 1 << 30, 1 << 30)).admit, 5);
}

TEST(StepPlannerAdmission, NeverFittingRequestsAreRefused) {
  PlannerLimits l = Limits(4, 512, 8);
  std::vector<WaitingRequest> w = {{100, 0}, {2000, 0}, {100, 0}, {1001, 0}, {100, 0}};
  // Refusals take no slot; the others are admitted in queue order around them.
  AdmissionPlan p = PlanAdmission(l, 0, w, Mem(1000, 0));
  EXPECT_EQ(p.admit, 3);
  EXPECT_EQ(p.refuse, (std::vector<size_t>{1, 3}));
  // Refused even when it would be the only one (nothing running).
  p = PlanAdmission(l, 0, {{5000, 0}}, Mem(1000, 0));
  EXPECT_EQ(p.admit, 0);
  EXPECT_EQ(p.refuse, (std::vector<size_t>{0}));
}

TEST(StepPlannerAdmission, WaitsThenAdmitsInQueueOrder) {
  PlannerLimits l = Limits(64, 512, 8);
  // The head does not fit: it and everything behind it wait (no overtaking by the small).
  std::vector<WaitingRequest> w = {{600, 0}, {10, 0}};
  AdmissionPlan p = PlanAdmission(l, 1, w, Mem(1000, 300, 200));
  EXPECT_EQ(p.admit, 0);
  EXPECT_TRUE(p.refuse.empty());
  // The running request finished and gave its memory back: both start.
  p = PlanAdmission(l, 0, w, Mem(1000, 0, 0));
  EXPECT_EQ(p.admit, 2);
  // Nothing running and the room held by something that waiting will not free (idle
  // stored sessions): the head starts anyway.
  p = PlanAdmission(l, 0, w, Mem(1000, 900, 0));
  EXPECT_EQ(p.admit, 1);
}

TEST(StepPlannerAdmission, EvictsCheckpointsBeforeWaiting) {
  PlannerLimits l = Limits(64, 512, 8);
  // 900 committed, requests of 100: evict 50 (850: 950 fits) -> admit (950) -> evict 100
  // (850) -> admit (950) -> evict 300 (650) -> admit 3 (950) -> short, none left: stop.
  AdmissionPlan p = PlanAdmission(l, 1, Waiting(10, 100), Mem(1000, 900, 0, {50, 100, 300}));
  EXPECT_EQ(p.evict_checkpoints, 3);
  EXPECT_EQ(p.admit, 5);
  // Checkpoints give way only as far as needed.
  p = PlanAdmission(l, 1, Waiting(1, 200), Mem(1000, 850, 0, {100, 100, 100}));
  EXPECT_EQ(p.evict_checkpoints, 1);
  EXPECT_EQ(p.admit, 1);
  // Nobody waiting: nothing evicted.
  p = PlanAdmission(l, 1, {}, Mem(1000, 950, 0, {100, 100}));
  EXPECT_EQ(p.evict_checkpoints, 0);
  // Not enough to evict: all go, still nobody is admitted.
  p = PlanAdmission(l, 1, Waiting(2, 100), Mem(1000, 990, 0, {10, 10}));
  EXPECT_EQ(p.evict_checkpoints, 2);
  EXPECT_EQ(p.admit, 0);
  // At max_running nothing is evicted.
  p = PlanAdmission(Limits(1, 512, 8), 1, Waiting(2, 100), Mem(1000, 990, 0, {10, 10}));
  EXPECT_EQ(p.evict_checkpoints, 0);
  EXPECT_EQ(p.admit, 0);
}

TEST(StepPlannerAdmission, OutstandingBytes) {
  std::vector<Sequence> s = {Seq(5, 4), Seq(5, 4), Seq(5, 4)};
  s[0].reserved_bytes = 500;
  s[0].held_bytes = 200;  // may still grow by 300
  s[1].reserved_bytes = 100;
  s[1].held_bytes = 400;  // past its reservation (shared pages copied): counts 0
  s[2].reserved_bytes = 900;
  s[2].done = true;
  EXPECT_EQ(OutstandingBytes(View(s)), 300u);
}

// --- Batch composition -----------------------------------------------------------------

TEST(StepPlannerBatch, DecodersFirstThenPrefillsInOrder) {
  std::vector<Sequence> s = {Seq(20, 0), Seq(5, 4), Seq(12, 8), Seq(9, 8, SequenceKind::kSessionRequest)};
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 4u);
  EXPECT_EQ(p.items[0].seq, 1u);  // decoding (one token left)
  EXPECT_EQ(p.items[1].seq, 3u);
  EXPECT_EQ(p.items[0].tokens, 1);
  EXPECT_TRUE(p.items[0].want_logits);
  EXPECT_EQ(p.items[2].seq, 0u);  // then prefill chunks
  EXPECT_EQ(p.items[2].tokens, 8);
  EXPECT_FALSE(p.items[2].want_logits);
  EXPECT_EQ(p.items[3].seq, 2u);
  EXPECT_EQ(p.items[3].tokens, 4);  // the rest of its prompt: ends the feed, wants logits
  EXPECT_TRUE(p.items[3].want_logits);
  EXPECT_EQ(p.total_tokens, 1 + 1 + 8 + 4);
  EXPECT_TRUE(p.preempt.empty());
}

// --prefill-interval: a held step with decoding sequences takes no prompt chunks; with
// nothing decoding the prompts run anyway (a hold never idles the backend).
TEST(StepPlannerBatch, HeldPrefillWaitsOnlyBesideDecodes) {
  std::vector<Sequence> s = {Seq(20, 0), Seq(5, 4), Seq(12, 8)};
  BatchPlan held = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0), /*hold_prefill=*/true);
  ASSERT_EQ(held.items.size(), 1u);
  EXPECT_EQ(held.items[0].seq, 1u);
  EXPECT_EQ(held.total_tokens, 1);
  BatchPlan free = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0), /*hold_prefill=*/false);
  EXPECT_EQ(free.items.size(), 3u);
  std::vector<Sequence> only_prompts = {Seq(20, 0), Seq(12, 8)};
  BatchPlan alone = PlanBatch(Limits(64, 512, 8), View(only_prompts), Mem(0, 0), /*hold_prefill=*/true);
  EXPECT_EQ(alone.items.size(), 2u);
  EXPECT_EQ(alone.total_tokens, 8 + 4);
}

TEST(StepPlannerBatch, PrefillCutsOnTheGrid) {
  PlannerLimits l = Limits(64, 512, 8);
  EXPECT_EQ(Cuts(Seq(21, 0), l), (std::vector<int>{8, 8, 5}));
  EXPECT_EQ(Cuts(Seq(16, 0), l), (std::vector<int>{8, 8}));
  EXPECT_EQ(Cuts(Seq(17, 0), l), (std::vector<int>{8, 8, 1}));  // a last single token: decode
  EXPECT_EQ(Cuts(Seq(3, 0), l), (std::vector<int>{3}));
  // A prefix-cache hit off the grid first feeds up to the grid, then on it.
  EXPECT_EQ(Cuts(Seq(21, 3), l), (std::vector<int>{5, 8, 5}));
  EXPECT_EQ(Cuts(Seq(21, 16), l), (std::vector<int>{5}));
  EXPECT_EQ(Cuts(Seq(21, 20), l), (std::vector<int>{1}));
  // The grid runs from the start of the feed: generated tokens join it too.
  EXPECT_EQ(Cuts(Seq(10, 0, SequenceKind::kSessionRequest, 4), l), (std::vector<int>{8, 2}));
}

TEST(StepPlannerBatch, CutsDoNotDependOnLoad) {
  PlannerLimits l = Limits(64, 20, 8);
  std::vector<Sequence> others;
  for (int i = 0; i < 12; ++i) others.push_back(Seq(1, 0));      // decoders
  for (int i = 0; i < 3; ++i) others.push_back(Seq(30, i * 3));  // other prompts
  for (size_t total : {5u, 17u, 21u, 40u}) {
    for (size_t start : {0u, 3u, 8u}) {
      if (start >= total) continue;
      EXPECT_EQ(Cuts(Seq(total, start), l, others), Cuts(Seq(total, start), l))
          << total << " tokens from " << start;
    }
  }
}

TEST(StepPlannerBatch, TokenBudgetAndTheAlwaysRunFirstPrefill) {
  // Budget 10, chunk 8: the first prefill takes 8, the second (8 > 2 left) waits, a
  // third that fits (2) runs.
  std::vector<Sequence> s = {Seq(20, 0), Seq(20, 0), Seq(2, 0)};
  BatchPlan p = PlanBatch(Limits(64, 10, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 2u);
  EXPECT_EQ(p.items[0].seq, 0u);
  EXPECT_EQ(p.items[1].seq, 2u);
  EXPECT_EQ(p.total_tokens, 10);
  // Decoders use the budget up; the first prefill still runs, the next waits.
  s = {Seq(1, 0), Seq(1, 0), Seq(1, 0), Seq(20, 0), Seq(20, 0)};
  p = PlanBatch(Limits(64, 3, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 4u);
  EXPECT_EQ(p.items[3].seq, 3u);
  EXPECT_EQ(p.items[3].tokens, 8);  // a whole chunk: the cut is never shrunk by the budget
  // A budget below one chunk: the first prefill runs its whole chunk.
  s = {Seq(20, 0)};
  p = PlanBatch(Limits(64, 2, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].tokens, 8);
}

TEST(StepPlannerBatch, DoneAndFinishedSequencesAreLeftOut) {
  std::vector<Sequence> s = {Seq(5, 4), Seq(5, 5), Seq(9, 0)};
  s[0].done = true;
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].seq, 2u);
  s[2].done = true;
  EXPECT_TRUE(PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0)).items.empty());
}

TEST(StepPlannerBatch, DeviceSamplingForDecodersAndPromptEnds) {
  std::vector<Sequence> s = {Seq(5, 4), Seq(5, 4), Seq(9, 0), Seq(20, 0)};
  s[0].device_sample = true;
  s[2].device_sample = true;  // a chunk ending the prompt: its row drawn in the backend
  s[2].feed.resize(6);
  s[3].device_sample = true;  // a chunk inside the prompt: no row at all
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 4u);
  EXPECT_TRUE(p.items[0].sample);
  EXPECT_FALSE(p.items[1].sample);
  EXPECT_TRUE(p.items[2].want_logits);
  EXPECT_TRUE(p.items[2].sample);
  EXPECT_FALSE(p.items[3].want_logits);
  EXPECT_FALSE(p.items[3].sample);
}

// --- Stored-session prefill (create/append) ---------------------------------------------

TEST(StepPlannerSessionPrefill, WholeChunksButTheLast) {
  PlannerLimits l = Limits(64, 512, 8);
  const auto kP = SequenceKind::kSessionPrefill;
  // Every whole chunk but the one holding the last token; no logits; the rest pending.
  EXPECT_EQ(FeedLimit(Seq(30, 0, kP), 8), 24u);
  EXPECT_EQ(Cuts(Seq(30, 0, kP), l), (std::vector<int>{8, 8, 8}));
  EXPECT_EQ(FeedLimit(Seq(24, 0, kP), 8), 16u);
  EXPECT_EQ(Cuts(Seq(24, 0, kP), l), (std::vector<int>{8, 8}));
  EXPECT_EQ(Cuts(Seq(9, 0, kP), l), (std::vector<int>{8}));
  EXPECT_TRUE(PrefillComplete(Seq(8, 0, kP), 8));  // nothing to prefill
  EXPECT_TRUE(PrefillComplete(Seq(0, 0, kP), 8));
  EXPECT_FALSE(PrefillComplete(Seq(9, 0, kP), 8));
  // The same cuts as a cold request over the same tokens, up to its last chunk.
  std::vector<int> cold = Cuts(Seq(30, 0), l);
  cold.pop_back();
  EXPECT_EQ(Cuts(Seq(30, 0, kP), l), cold);
  // Chunk 1: single-token chunks stay prefill items (no logits, not decoders).
  std::vector<Sequence> s = {Seq(3, 0, kP)};
  BatchPlan p = PlanBatch(Limits(64, 512, 1), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].tokens, 1);
  EXPECT_FALSE(p.items[0].want_logits);
  EXPECT_EQ(Cuts(Seq(3, 0, kP), Limits(64, 512, 1)), (std::vector<int>{1, 1}));
}

TEST(StepPlannerSessionPrefill, PlannedWithinTheBudgetLikeAnyPrefill) {
  const auto kP = SequenceKind::kSessionPrefill;
  // Decoders first; the session prefill is the step's first prefill: it runs.
  std::vector<Sequence> s = {Seq(40, 0, kP), Seq(1, 0), Seq(20, 0)};
  BatchPlan p = PlanBatch(Limits(64, 12, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 2u);
  EXPECT_EQ(p.items[0].seq, 1u);
  EXPECT_EQ(p.items[1].seq, 0u);
  EXPECT_EQ(p.items[1].tokens, 8);
  EXPECT_FALSE(p.items[1].want_logits);
  // Behind an earlier prompt it waits for budget like any prefill.
  s = {Seq(20, 0), Seq(40, 0, kP)};
  p = PlanBatch(Limits(64, 12, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].seq, 0u);
  p = PlanBatch(Limits(64, 16, 8), View(s), Mem(0, 0));
  ASSERT_EQ(p.items.size(), 2u);
  EXPECT_EQ(p.items[1].seq, 1u);
}

// --- Applying a step's result ----------------------------------------------------------

TEST(StepPlannerApply, AdvancesAndNumbersRowsAndDraws) {
  const auto kS = SequenceKind::kSessionRequest;
  std::vector<Sequence> s = {
      Seq(7, 6, SequenceKind::kRequest, 4),  // decoding a generated token, device-sampled
      Seq(4, 3),                             // decoding the last prompt token
      Seq(20, 0),                            // a prompt chunk inside the prompt
      Seq(6, 0, kS),                         // a stored session's prompt, to its end
      Seq(9, 8, SequenceKind::kRequest, 5),  // decoding, host-sampled
      Seq(5, 4, SequenceKind::kRequest, 2),  // decoding, device-sampled
      Seq(30, 0, SequenceKind::kSessionPrefill),
  };
  s[0].device_sample = s[5].device_sample = true;
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 0));
  std::vector<ItemResult> r = ApplyStepResult(p, Mut(s));
  ASSERT_EQ(r.size(), 7u);
  // Decoders in order, then prefills in order.
  std::vector<size_t> order;
  for (const ItemResult& x : r) order.push_back(x.seq);
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 4, 5, 2, 3, 6}));
  EXPECT_EQ(r[0].action, ItemAction::kTakeSampled);
  EXPECT_EQ(r[0].index, 0u);
  EXPECT_EQ(r[1].action, ItemAction::kSampleRow);
  EXPECT_EQ(r[1].index, 0u);
  EXPECT_EQ(r[2].action, ItemAction::kSampleRow);
  EXPECT_EQ(r[2].index, 1u);
  EXPECT_EQ(r[3].action, ItemAction::kTakeSampled);
  EXPECT_EQ(r[3].index, 1u);
  EXPECT_EQ(r[4].action, ItemAction::kNone);
  EXPECT_EQ(r[5].action, ItemAction::kSampleRow);
  EXPECT_EQ(r[5].index, 2u);
  EXPECT_EQ(r[6].action, ItemAction::kNone);
  // Fed counts advanced by each item.
  EXPECT_EQ(s[0].fed, 7u);
  EXPECT_EQ(s[1].fed, 4u);
  EXPECT_EQ(s[2].fed, 8u);
  EXPECT_EQ(s[3].fed, 6u);
  EXPECT_EQ(s[6].fed, 8u);
  // Prompt tokens for the metrics: none for generated tokens.
  EXPECT_EQ(r[0].prompt_tokens, 0u);
  EXPECT_EQ(r[1].prompt_tokens, 1u);
  EXPECT_EQ(r[4].prompt_tokens, 8u);
  EXPECT_EQ(r[5].prompt_tokens, 6u);
  EXPECT_EQ(r[6].prompt_tokens, 8u);
  // Checkpoints: plain requests whose state is all prompt.
  EXPECT_FALSE(r[0].checkpoint_prompt);  // past the prompt
  EXPECT_TRUE(r[1].checkpoint_prompt);   // the whole prompt, with its logits row
  EXPECT_TRUE(r[4].checkpoint_prompt);
  EXPECT_FALSE(r[5].checkpoint_prompt);  // a stored session's state is its own
  EXPECT_FALSE(r[6].checkpoint_prompt);
  EXPECT_FALSE(r[2].checkpoint_prompt);
}

// --- Preemption ------------------------------------------------------------------------

TEST(StepPlannerPreemption, NothingWithoutStepBytesOrCapacity) {
  std::vector<Sequence> s = {Seq(5, 4), Seq(5, 4), Seq(20, 0)};
  EXPECT_TRUE(PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 1000)).preempt.empty());
  for (Sequence& x : s) x.step_bytes = 1 << 20;
  EXPECT_TRUE(PlanBatch(Limits(64, 512, 8), View(s), Mem(0, 1 << 30)).preempt.empty());
}

TEST(StepPlannerPreemption, NewestGoFirstUntilTheStepFits) {
  std::vector<Sequence> s = {Seq(5, 4), Seq(5, 4), Seq(20, 0, SequenceKind::kSessionPrefill), Seq(5, 4)};
  s[0].step_bytes = 100;
  s[1].step_bytes = 100;
  s[1].held_bytes = 200;
  s[2].step_bytes = 0;
  s[2].held_bytes = 5000;  // a stored-session prefill: sits out, frees nothing
  s[3].done = true;        // ended: never a victim
  s[3].step_bytes = 1000;
  // 950 used, 200 needed: the newest runnable (2) frees nothing, then request 1 frees its
  // 200 and needs 100 less: 750 + 100 <= 1000.
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 950));
  EXPECT_EQ(p.preempt, (std::vector<size_t>{2, 1}));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].seq, 0u);
  // The oldest always runs, even short of memory.
  s[0].step_bytes = 5000;
  p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 950));
  EXPECT_EQ(p.preempt, (std::vector<size_t>{2, 1}));
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_EQ(p.items[0].seq, 0u);
  // Enough room: nobody.
  s[0].step_bytes = 10;
  p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 800));
  EXPECT_TRUE(p.preempt.empty());
  EXPECT_EQ(p.items.size(), 3u);
}

TEST(StepPlannerPreemption, OnlyAsManyAsNeeded) {
  // Five decoding requests growing 100 each, 600 used of 1000 (each holds 120): 500
  // needed, 400 free. Preempting the newest frees 120 and 100 of need: 480 + 400 fits.
  std::vector<Sequence> s(5, Seq(5, 4));
  for (Sequence& x : s) {
    x.step_bytes = 100;
    x.held_bytes = 120;
  }
  BatchPlan p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 600));
  EXPECT_EQ(p.preempt, (std::vector<size_t>{4}));
  EXPECT_EQ(p.items.size(), 4u);
  // Tighter: 900 used: 4 (780 + 400 > 1000), then 3 (660 + 300 fits).
  p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 900));
  EXPECT_EQ(p.preempt, (std::vector<size_t>{4, 3}));
  EXPECT_EQ(p.items.size(), 3u);
  // 1000 used: 4, 3, 2 (540 + 200 fits).
  p = PlanBatch(Limits(64, 512, 8), View(s), Mem(1000, 1000));
  EXPECT_EQ(p.preempt, (std::vector<size_t>{4, 3, 2}));
  EXPECT_EQ(p.items.size(), 2u);
}

TEST(StepPlannerPreemption, StepBytesFollowTheNextChunk) {
  EXPECT_EQ(NextChunk(Seq(5, 4), 8), 1u);           // decoding
  EXPECT_EQ(NextChunk(Seq(20, 3), 8), 5u);          // up to the grid
  EXPECT_EQ(NextChunk(Seq(20, 16), 8), 4u);         // the rest
  EXPECT_EQ(NextChunk(Seq(5, 5), 8), 0u);           // nothing to feed
  EXPECT_EQ(NextChunk(Seq(17, 0, SequenceKind::kSessionPrefill), 8), 8u);
  EXPECT_EQ(NextChunk(Seq(17, 16, SequenceKind::kSessionPrefill), 8), 0u);  // the last stays
}

}  // namespace
}  // namespace rwkvx
