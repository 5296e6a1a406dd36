// The step planner: what the scheduler's next step admits and runs, as plain functions of
// the scheduler's state, modelled on vLLM's Scheduler.schedule() / update_from_output()
// and nano-vllm's scheduler. No threads, no backend, no clock: the loop thread
// (server/scheduling/scheduler.h) gathers the state, calls these, carries the plan out on
// the Backend, and hands the result back. Tested alone in tests/unit/step_planner_test.cc.
// The memory rules (reservations, preemption) are docs/MEMORY.md.
//
// One loop iteration makes two plans, because admitting has effects the batch depends on
// (a prefix-cache hit decides where an admitted prompt starts):
//   PlanAdmission  which waiting requests start now (max_running, queue order, memory
//                  reservations), which can never fit (refused), and which prefix-cache
//                  checkpoints to evict first to make room;
//   PlanBatch      the step: which sequences sit out to free memory (preemption), which
//                  feed how many tokens (decoding sequences first, then prefill chunks cut
//                  on the grid within the token budget);
// then, after the backend ran the step, ApplyStepResult advances each sequence and says
// what to do with each item's output.
//
// Ownership: the functions keep nothing; Sequence values belong to the loop thread's
// per-request / per-prefill state, which alone calls these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rwkvx {

struct PlannerLimits {
  int max_running = 64;        // requests running at once (stored-session prefills aside)
  int max_batch_tokens = 512;  // tokens per step, decode + prefill
  int prefill_chunk = 128;     // the grid: prompts are cut at multiples of it from the start
  // With sequences decoding, prompt chunks join a step only every prefill_interval steps
  // (the steps between are pure decode: CUDA-graph replays on the GPU). 1 = every step.
  int prefill_interval = 1;
};

enum class SequenceKind {
  kRequest,         // a generate on a session of its own (may leave prefix-cache checkpoints)
  kSessionRequest,  // a generate continuing a named session
  kSessionPrefill,  // create/append of a named session: whole chunks of its pending tokens,
                    // all but the chunk holding the last one, no logits (docs/SESSIONS.md)
};

// The planner's view of one running sequence. The loop keeps one per running request and
// per stored-session prefill, in start order (the order PlanBatch serves them).
struct Sequence {
  SequenceKind kind = SequenceKind::kRequest;
  std::vector<int32_t> feed;  // tokens to feed: (pending +) prompt, then each generated token
  size_t fed = 0;             // feed[0, fed) are in the session's state
  size_t prompt_len = 0;      // feed[0, prompt_len) is prompt (kSessionPrefill: all of it)
  bool done = false;          // ended: in no plan
  // Set by the loop before PlanBatch: the backend may draw this sequence's next token
  // itself (device sampling on and supported, no logit rows wanted; at the end of a
  // prompt only when the prefix cache does not keep that row).
  bool device_sample = false;
  // Memory (set by the loop when the backend has a capacity; docs/MEMORY.md):
  // reserved_bytes: what its session may grow to (Backend::SessionBytesFor of the tokens it
  //   may end with; 0 for a stored-session prefill, which reserves nothing);
  // held_bytes: what its session holds now (Backend::SessionBytes);
  // step_bytes: what its next chunk adds (Backend::StepBytes of NextChunk tokens).
  size_t reserved_bytes = 0;
  size_t held_bytes = 0;
  size_t step_bytes = 0;
};

// Where the planner stops feeding a sequence: the whole feed for a request; for a
// stored-session prefill the last multiple of prefill_chunk before its last token (the
// rest stays pending, fed by the next generate exactly as a cold request would cut it).
size_t FeedLimit(const Sequence& s, int prefill_chunk);
// Whether a stored-session prefill has fed all it will (it ends; its session is idle).
inline bool PrefillComplete(const Sequence& s, int prefill_chunk) {
  return s.fed >= FeedLimit(s, prefill_chunk);
}
// Tokens the sequence's next item feeds at most (1 when decoding, else its next chunk up
// to the grid); 0 when it has nothing to feed.
size_t NextChunk(const Sequence& s, int prefill_chunk);
// Bytes the running sequences' reservations may still add to what they hold: the sum of
// reserved_bytes - held_bytes over the sequences that are not done (none below 0).
size_t OutstandingBytes(const std::vector<const Sequence*>& seqs);

struct MemoryView {
  size_t capacity_bytes = 0;  // the backend's budget (0 = unbounded: no memory rule)
  size_t used_bytes = 0;      // what all its sessions hold now (Backend::Memory)
  size_t outstanding_bytes = 0;  // OutstandingBytes of the running sequences
  // Prefix-cache checkpoints in eviction order (least recently used first): the bytes
  // evicting each one gives back. Admission may evict them; nothing else waits on them.
  std::vector<size_t> checkpoint_bytes;
};

struct WaitingRequest {
  size_t reserve_bytes = 0;  // its reservation: SessionBytesFor(tokens it may end with)
  size_t held_bytes = 0;     // of it, what its session holds in the backend already
};

struct AdmissionPlan {
  int admit = 0;              // admitted, in queue order
  int evict_checkpoints = 0;  // evict this many checkpoints first, in eviction order
  // Queue positions (ascending) refused at once: their reservation alone is over the
  // capacity. The first admit + refuse.size() waiting requests leave the queue.
  std::vector<size_t> refuse;
};

// Reservations: a request starts only when used + outstanding + its reservation (less what
// its session already holds) fits the capacity. In queue order, while fewer than
// max_running run (`running` counts running requests): a request whose reservation alone
// exceeds the capacity is refused; one that fits is admitted; one that does not fit makes
// the next checkpoint be evicted, or, none left, waits with everything behind it. When
// nothing runs, the head is admitted once no checkpoint is left (what holds the room,
// idle stored sessions, does not go away by waiting). Unbounded capacity: only
// max_running counts.
AdmissionPlan PlanAdmission(const PlannerLimits& limits, int running,
                            const std::vector<WaitingRequest>& waiting, const MemoryView& mem);

struct PlanItem {
  size_t seq = 0;            // index into PlanBatch's `seqs`
  int tokens = 0;            // feed[fed, fed + tokens)
  bool want_logits = false;  // the step returns what follows its last token
  bool sample = false;       // with want_logits: the backend draws the token (device sampling)
};

struct BatchPlan {
  // Decoding sequences (one token left) first, so that running streams keep flowing; then
  // prefill chunks, each in sequence order.
  std::vector<PlanItem> items;
  int total_tokens = 0;
  // Sequences that sit this step out to free memory, newest first. The loop preempts each
  // kRequest (its state exported to the host, its session freed, resumed later exactly
  // where it stopped); other kinds only sit out (they stop growing, keep what they hold).
  std::vector<size_t> preempt;
};

// Preemption first: with a capacity, while used + the runnable sequences' step_bytes
// exceed it, the newest runnable sequence is preempted (a kRequest gives back its
// held_bytes, any kind stops adding its step_bytes); the oldest one always runs. Then the
// batch: every decoding sequence feeds its token
// (want_logits; sample if device_sample); every other sequence with tokens left feeds
// the next chunk up to the next multiple of prefill_chunk (from the start of its feed, so
// a prefix-cache hit off the grid first feeds up to the grid), at most to FeedLimit,
// wanting logits when the chunk ends the feed (sampled if device_sample). A chunk that does not fit the remaining
// token budget waits, except the step's first prefill chunk, which always runs (prompts
// never starve behind many decoding sequences). Chunks never depend on the load.
// hold_prefill (the caller's count of steps since the last one with prompt chunks is below
// prefill_interval - 1): a step that has decoding sequences takes no prompt chunks; with
// none decoding, prompt chunks run regardless.
BatchPlan PlanBatch(const PlannerLimits& limits, const std::vector<const Sequence*>& seqs,
                    const MemoryView& mem, bool hold_prefill = false);

enum class ItemAction {
  kNone,         // nothing to emit (a prefill chunk inside the prompt)
  kSampleRow,    // sample a token from logits row `index` of the step
  kTakeSampled,  // the backend drew the token: sampled entry `index` of the step
};

struct ItemResult {
  size_t seq = 0;
  int tokens = 0;            // tokens the item fed
  size_t prompt_tokens = 0;  // of them, prompt tokens (metrics)
  ItemAction action = ItemAction::kNone;
  size_t index = 0;
  // A kRequest whose state is now all prompt: the prefix cache may checkpoint it (its own
  // rules decide where; server/prefix_cache/prefix_cache_hooks.h).
  bool checkpoint_prompt = false;
};

// After a successful step: advances each item's sequence by the tokens it fed and says,
// per item in plan order, what to do with its output. Logits rows and sampled entries
// are numbered in item order, as Backend::Step / StepSampled return them.
std::vector<ItemResult> ApplyStepResult(const BatchPlan& plan, const std::vector<Sequence*>& seqs);

}  // namespace rwkvx
