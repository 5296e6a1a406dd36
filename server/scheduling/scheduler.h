// The scheduler: the only owner of backend sessions, in three parts (docs/SERVER.md):
//   - the step planner (step_planner.h), plain functions that decide what each step
//     admits and runs (continuous batching: requests join and leave between steps);
//   - the session store (server/sessions/session_store.h): named sessions, their tiers,
//     files and background saves; the prefix cache (server/prefix_cache/);
//   - this loop thread, which runs the plans on the Backend (its only caller: every
//     backend step, stored-session prefill included, is one planned step), samples, and
//     pushes events to each RequestStream (active_request.h). Cancellation, deadlines,
//     drain and stop conditions are checked every step.
// Memory (docs/MEMORY.md, scheduler_memory.cc): requests are admitted against memory
// reservations (a request that can never fit is refused at once: 429 before its first
// byte); running requests that still outgrow the backend are preempted (state exported to
// the host, resumed exactly later), so a step never fails for memory. A backend that is
// lost (IsBackendLost / !Healthy) ends every request with Unavailable, makes the server
// not-ready and calls the fatal callback: the process exits non-zero.
//
// Threads: the constructor, OpenSessionDir(), Start() and Stop() are called by the owner
// (ServeMain or a test) on one thread. Submit(), BeginDrain(), WaitIdle(), the counters
// and the stored-session calls may be called from any thread. The Backend, the session
// store, the prefix cache and the Tokenizer's StreamDecoders are touched only by the loop
// thread. Stored-session callbacks run on the loop thread: they must not block (post to
// the caller's executor or complete a gRPC reactor).
//
// Prefill chunking depends only on the request (chunks of prefill_chunk tokens from the
// start), never on what else is in the batch. On the CPU backend, whose kernels give the
// same bits for a session alone or in any batch, a request's tokens therefore do not
// depend on load. The CUDA backend picks attention splits and kernels by the batch's
// shape, so there a request's logits (and, rarely, a sampled token) may differ with load.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics/metrics.h"
#include "server/prefix_cache/prefix_cache_hooks.h"
#include "server/request.h"
#include "server/scheduling/active_request.h"
#include "server/scheduling/step_planner.h"
#include "server/session_append.h"
#include "server/session_info.h"
#include "server/sessions/session_store.h"

namespace rwkvx {

struct SchedulerOptions {
  int max_running = 64;        // sessions generating at once
  int max_queued = 256;        // waiting requests; past this Submit refuses at once
  int max_batch_tokens = 512;  // tokens per step (decode + prefill)
  int prefill_chunk = 128;     // prompt tokens per session per step
  int prefill_interval = 1;    // PlannerLimits::prefill_interval (--prefill-interval)
  // Stored (named) sessions.
  int max_stored_sessions = 256;
  size_t stored_session_budget_bytes = size_t{1} << 30;
  absl::Duration stored_session_idle_timeout = absl::Minutes(10);
  // Prefix state cache (server/prefix_cache/prefix_cache.h, docs/PREFIX_CACHE.md): byte budget of its
  // checkpoints (0 = off) and the shortest prefix worth one.
  size_t prefix_cache_bytes = 0;
  int prefix_cache_min_tokens = 16;
  // Tiers of stored sessions (docs/SESSIONS.md): idle sessions past the backend budget
  // above move to host memory as snapshot bytes, past the host budget to --session-dir.
  size_t session_host_budget_bytes = size_t{4} << 30;
  size_t session_disk_budget_bytes = size_t{64} << 30;
  std::string session_dir;  // "" = no disk tier, nothing survives a restart
  absl::Duration session_lease_time = absl::Seconds(30);  // replicas sharing session_dir
  size_t max_snapshot_bytes = size_t{1} << 30;  // largest snapshot a client may upload
  // Sample generated tokens inside the backend where it can (the CUDA backend): only
  // token ids cross to the host. Requests with top_logprobs, prompt ends and backends
  // without it take the logits row and the host sampler (docs/SAMPLING.md).
  bool device_sampling = false;
  // Requests without stop strings hand their tokens to a StreamWriter that detokenizes and
  // pushes on the stream notifier's thread (stream_writer.h); off: the loop does it.
  bool stream_writer = true;
  // Each step's results are taken (Backend::EndStep) only once the loop's other host work
  // for the next iteration is done (stream wake-ups, gauges, the checks for endings and
  // room), so that work overlaps the device's step (--overlap-steps). Off: every step is
  // waited for as soon as it is launched.
  bool overlap_steps = true;
};

// Test-only knobs (the --testing-... flags; docs/SESSIONS.md), kept out of the options a
// production server is configured with.
struct SchedulerTestingOptions {
  int session_write_pause_ms = 0;  // SessionFilesOptions::testing_write_pause_ms
  std::string session_write_gate;  // SessionFilesOptions::testing_write_gate
  // > 0: the Nth step run with every max_running slot busy fails as a lost backend
  // (--testing-fail-step-after; the step is not run).
  int fail_step_after = 0;
  std::string replica_host;        // SessionFilesOptions::testing_replica_host
};

// This thread's CPU seconds (CLOCK_THREAD_CPUTIME_ID): rwkvx_scheduler_cpu_seconds_total.
double ThreadCpuSeconds();

class Scheduler {
 public:
  // `tokenizer` and `metrics` must outlive the scheduler.
  Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer, SchedulerOptions opts,
            ServerMetrics* metrics, SchedulerTestingOptions testing = {});
  ~Scheduler();  // Stop()

  // --session-dir (opts.session_dir): opens it and registers every saved session (tier
  // disk). Call before Start(); a no-op without a session dir. InvalidArgument if unusable.
  absl::Status OpenSessionDir();
  void Start();
  // Ends every request (finish reason shutdown), frees all sessions, joins the loop.
  void Stop();

  // Queues a request. ResourceExhausted when the wait queue is full or the request's
  // memory reservation alone is over the backend's capacity, Unavailable while draining or
  // stopped. On OK the stream will receive exactly one final event.
  absl::Status Submit(std::shared_ptr<RequestStream> stream);

  // Stops admitting new requests; running and queued ones may finish within `grace`,
  // after which they end with finish reason shutdown.
  void BeginDrain(absl::Duration grace);
  bool draining() const { return draining_.load(); }
  // Blocks until no request is running or waiting, or `timeout` passes. True if idle.
  bool WaitIdle(absl::Duration timeout);

  // Called once, on the loop thread, when the backend is lost (set before Start). The
  // owner should drain and exit non-zero; the scheduler is already not admitting.
  void SetFatalCallback(std::function<void()> cb) { on_fatal_ = std::move(cb); }
  bool fatal() const { return fatal_.load(); }

  int running() const { return running_count_.load(); }
  int waiting() const { return waiting_count_.load(); }
  const SchedulerOptions& options() const { return opts_; }

  // Stored sessions (named state kept between Generate calls).
  using InfoCallback = std::function<void(absl::StatusOr<StoredSessionInfo>)>;
  void CreateSession(std::string name, InfoCallback done);
  void GetSession(std::string name, InfoCallback done);
  void DeleteSession(std::string name, std::function<void(absl::Status)> done);
  // The session API (scheduler_sessions.cc, docs/SESSIONS.md). Names of new sessions:
  // 1-128 of [A-Za-z0-9._:-]. `tokens` become pending; every whole prefill chunk of them
  // but the one holding the last token is fed before `done` (a kSessionPrefill sequence,
  // planned within the steps' token budget like any prefill), the rest by the next
  // generate, cut as one request over the whole history would be. An ephemeral
  // session (client-held state) is never listed, saved or moved to disk.
  // `initial` (null = zeros): the state it starts from (an --initial-state).
  void CreateSession(std::string name, std::vector<int32_t> tokens, bool ephemeral,
                     InfoCallback done, std::shared_ptr<const SessionState> initial = nullptr);
  // `control` (may be null; server/session_append.h): progress after each chunk, and a
  // cancel that ends the append at a chunk boundary with its unfed tokens dropped.
  void AppendToSession(std::string name, std::vector<int32_t> tokens, InfoCallback done,
                       std::shared_ptr<AppendControl> control = nullptr);
  // `ephemeral`: the copy is never listed, saved or moved to disk (a working copy).
  void ForkSession(std::string source, std::string name, InfoCallback done, bool ephemeral = false);
  using BytesCallback = std::function<void(absl::StatusOr<std::string>)>;
  // The snapshot bytes (engine/snapshot.h); `remove` deletes the session afterwards.
  void SnapshotSession(std::string name, bool remove, BytesCallback done);
  // A new session from snapshot bytes; InvalidArgument with the reason for bad bytes.
  void RestoreSession(std::string name, std::string bytes, bool ephemeral, InfoCallback done);
  using ListCallback = std::function<void(std::vector<StoredSessionInfo>)>;
  void ListSessions(ListCallback done);

 private:
  // A create/append prefilling a named session (busy meanwhile); `done` when it ends.
  struct SessionPrefill {
    std::string name;
    SessionId sid = 0;
    Sequence seq;  // kSessionPrefill over the pending tokens at the start
    uint64_t order = 0;
    InfoCallback done;
    std::shared_ptr<AppendControl> control;  // an append's progress and cancel, or null
    size_t before = 0;  // pending tokens from before this append (fed first)
  };
  // One sequence of the next step: a running request or a session prefill.
  struct Runner {
    ActiveRequest* req = nullptr;
    SessionPrefill* prefill = nullptr;
    Sequence* seq = nullptr;
    SessionId sid = 0;
  };

  void Loop();
  void RunCommands(std::deque<std::function<void()>>* cmds);
  void EndAllWaiting(FinishReason reason, const absl::Status& why);
  void CheckEndings(absl::Time now);
  bool StartActive(std::shared_ptr<RequestStream> s, absl::Time now, size_t reserve_bytes);
  // Memory (scheduler_memory.cc): admission with reservations, preemption and resume.
  void Admit(absl::Time now);
  WaitingRequest Reserve(const GenerateRequest& r) const;
  // Measures what each running sequence holds and its next step adds; the memory view.
  MemoryView MemoryNow(bool with_checkpoints);
  void Preempt(ActiveRequest& a);  // state to the host, session freed (parked)
  void ParkPreempted();            // moves parked requests from active_ to preempted_
  bool Resume();                   // the head of preempted_ back into active_
  void EndPreempted(bool (*ends)(const ActiveRequest&), FinishReason reason, const absl::Status& why);
  // One step (scheduler_step.cc): plan, the backend call, the result. A backend error
  // ends every request of the step and drops every stored session it fed (FailStep).
  std::vector<Runner> Runners();  // running requests and session prefills, in start order
  bool RunStep();     // LaunchStep, then PublishDeferred
  bool LaunchStep();  // settles the step in flight, plans and launches the next one
  // The tokens whose hand-over to their StreamWriters Emit deferred (deferred_). Run
  // after each launch (so it overlaps the step) and before any final event (Finish).
  void PublishDeferred();
  void FailStep(const BatchPlan& plan, std::vector<Runner>& run);
  // The backend is lost: not-ready, every request ends Unavailable, the sessions the step
  // fed are dropped (their saved files stay), the fatal callback runs.
  void Fatal(const absl::Status& st, const BatchPlan& plan, std::vector<Runner>& run);
  // Backend::BeginStep into step_logits_ / step_sampled_ (the testing failure first).
  absl::Status BeginBackendStep(const std::vector<StepInput>& items, bool sampled);
  // The step in flight (flight_), if any: Backend::EndStep, then its results. Everything
  // that reads or changes what a step changes (Finish, commands, admission, the next
  // plan) settles first; with --overlap-steps the rest of the loop's host work (stream
  // wake-ups, gauges, the checks for endings and room) runs while the step is in flight.
  void SettleStep();
  void ApplyResults(const BatchPlan& plan, std::vector<Runner>& run, const std::vector<Sequence*>& seqs,
                    absl::Time now);
  // A step that failed (at BeginStep or EndStep): Fatal for a lost backend, else FailStep.
  void StepFailed(const absl::Status& st, const BatchPlan& plan, std::vector<Runner>& run);
  void HandleToken(ActiveRequest& a, float* logits, absl::Time now);
  // The rest of HandleToken once a token is chosen (on the host or by the backend).
  void EmitToken(ActiveRequest& a, SampleResult r, absl::Time now);
  // Ends a running request: its session goes back to the store, to the prefix cache, or
  // is freed; then the final event.
  // flush: Ending::flush (a StreamWriter decodes what the event's text still lacks).
  void Finish(ActiveRequest& a, FinishReason reason, absl::Status status, GenerateEvent ev, bool flush = false);
  void UpdateCountGauges();  // the request and session counts only (no backend calls)
  void UpdateGauges();       // the counts, then the walk over sessions for bytes and KV rows
  // Session prefills (scheduler_sessions.cc): StartPrefill after a create/append (ends at
  // once when no whole chunk is due), EndPrefill when its last chunk ran, EndPrefills at
  // shutdown.
  void StartPrefill(const std::string& name, InfoCallback done,
                    std::shared_ptr<AppendControl> control = nullptr, size_t appended = 0);
  // `n` more tokens of `p` went in: progress, then the end, or a cancel (AppendControl).
  void AdvancePrefill(SessionPrefill& p, size_t n, absl::Time now);
  void EndPrefill(SessionPrefill& p, absl::StatusOr<StoredSessionInfo> result);
  void EndPrefills(absl::Status why);
  bool Post(std::function<void()> cmd);  // false once stopped

  std::unique_ptr<Backend> backend_;
  const Tokenizer* tokenizer_;
  const SchedulerOptions opts_;
  const SchedulerTestingOptions testing_;
  const PlannerLimits limits_;
  ServerMetrics* metrics_;

  // Shared with other threads, under mu_.
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the loop
  std::condition_variable idle_cv_;  // wakes WaitIdle
  std::deque<std::shared_ptr<RequestStream>> waiting_;
  std::deque<std::function<void()>> commands_;
  bool stop_ = false;
  int admitting_ = 0;  // requests popped from waiting_ whose StartActive has not returned
  absl::Time drain_deadline_ = absl::InfiniteFuture();

  std::atomic<bool> draining_{false};
  std::atomic<bool> fatal_{false};
  std::function<void()> on_fatal_;
  size_t capacity_ = 0;  // Memory().capacity_bytes at construction (Submit's refusal)
  std::atomic<int> running_count_{0};
  std::atomic<int> waiting_count_{0};
  absl::Time last_gauges_ = absl::InfinitePast();  // the loop's last UpdateGauges
  // What the count gauges depend on (running, preempted, prefilling, stored, waiting), as
  // the last loop iteration saw it: a change updates them at once.
  using GaugeCounts = std::array<size_t, 5>;
  GaugeCounts last_gauge_counts_{};
  int steps_since_prefill_ = 0;  // steps since the last one that took prompt chunks
  // RunStep's buffers, kept between steps so that their capacity is reused.
  std::vector<StepInput> step_items_;
  std::vector<float> step_logits_;
  std::vector<SampledToken> step_sampled_;
  double step_busy_s_ = 0;   // this loop iteration's step seconds (plan, backend, results)
  double step_cpu_s_ = 0;    // the same in the thread's CPU seconds
  // The step launched and not yet settled (SettleStep), with what its results need.
  struct InFlightStep {
    bool active = false;
    BatchPlan plan;
    std::vector<Runner> run;
    std::vector<Sequence*> seqs;
    int kind = 0;
    absl::Time begun;  // before BeginStep
  };
  InFlightStep flight_;
  std::vector<DeferredToken> deferred_;  // --overlap-steps: see PublishDeferred
  StreamNotifier notifier_;  // wakes stream readers after each step (before thread_: outlives it)
  std::thread thread_;

  // Loop thread only (declared after backend_: destroyed before it).
  std::vector<std::unique_ptr<ActiveRequest>> active_;
  std::vector<std::unique_ptr<SessionPrefill>> prefills_;
  // Preempted requests (state parked on the host), in start order: resumed first.
  std::vector<std::unique_ptr<ActiveRequest>> preempted_;
  int full_steps_ = 0;  // steps run with every slot busy (fail_step_after)
  uint64_t next_order_ = 0;
  SessionStore store_;
  PrefixCacheHooks prefix_;
  absl::Time last_expiry_check_;
  std::vector<int32_t> unspellable_;  // ids with no tokenizer bytes (id 0 = end of text excluded)
};

}  // namespace rwkvx
