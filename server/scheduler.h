// The scheduler: the only owner of backend sessions. One loop thread admits waiting
// requests within the session and memory budgets, builds each step (decoding sessions
// feed one token, prefilling sessions a chunk of their prompt, within the step's token
// budget), runs it on the Backend, samples, and pushes events to each RequestStream.
// Continuous batching: requests join and leave between steps. Cancellation, deadlines,
// drain and stop conditions are checked every step.
//
// Threads: the constructor, Start() and Stop() are called by the owner (ServeMain or a
// test) on one thread. Submit(), BeginDrain(), counters and the stored-session calls may
// be called from any thread. The Backend and the Tokenizer's StreamDecoders are touched
// only by the loop thread. Stored-session callbacks run on the loop thread: they must not
// block (post to the caller's executor or complete a gRPC reactor).
//
// Prefill chunking depends only on the request (chunks of prefill_chunk tokens from the
// start), never on what else is in the batch, so a request's tokens do not depend on load.
#pragma once

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
#include "engine/tokenizer.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/request.h"
#include "server/session_files.h"
#include "server/session_writer.h"

namespace rwkvx {

struct SchedulerOptions {
  int max_running = 64;        // sessions generating at once
  int max_queued = 256;        // waiting requests; past this Submit refuses at once
  int max_batch_tokens = 512;  // tokens per step (decode + prefill)
  int prefill_chunk = 128;     // prompt tokens per session per step
  // Stored (named) sessions.
  int max_stored_sessions = 256;
  size_t stored_session_budget_bytes = size_t{1} << 30;
  absl::Duration stored_session_idle_timeout = absl::Minutes(10);
  // Prefix state cache (server/prefix_cache.h, docs/PREFIX_CACHE.md): byte budget of its
  // checkpoints (0 = off) and the shortest prefix worth one.
  size_t prefix_cache_bytes = 0;
  int prefix_cache_min_tokens = 16;
  // Tiers of stored sessions (docs/SESSIONS.md): idle sessions past the backend budget
  // above move to host memory as snapshot bytes, past the host budget to --session-dir.
  size_t session_host_budget_bytes = size_t{4} << 30;
  size_t session_disk_budget_bytes = size_t{64} << 30;
  std::string session_dir;  // "" = no disk tier, nothing survives a restart
  int testing_session_write_pause_ms = 0;  // test-only (SessionFilesOptions)
  std::string testing_session_write_gate;  // test-only (SessionFilesOptions)
  size_t max_snapshot_bytes = size_t{1} << 30;  // largest snapshot a client may upload
  // Sample generated tokens inside the backend where it can (the CUDA backend): only
  // token ids cross to the host. Requests with top_logprobs, prompt ends and backends
  // without it take the logits row and the host sampler (docs/SAMPLING.md).
  bool device_sampling = false;
};

enum class SessionTier { kBackend, kHost, kDisk };
const char* SessionTierName(SessionTier t);  // "backend", "host", "disk"

struct StoredSessionInfo {
  std::string name;
  size_t state_bytes = 0;
  size_t kv_tokens = 0;
  long long tokens_seen = 0;  // tokens fed to the session so far
  absl::Time created;
  absl::Time last_used;
  absl::Time expires;
  bool busy = false;  // a Generate is using it now
  long long pending_tokens = 0;  // accepted tokens not yet fed (fed by the next generate)
  SessionTier tier = SessionTier::kBackend;
  bool saved = false;  // a file in --session-dir holds it (maybe older than the live state)
};

class Scheduler {
 public:
  // `tokenizer` and `metrics` must outlive the scheduler.
  Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer, SchedulerOptions opts,
            ServerMetrics* metrics);
  ~Scheduler();  // Stop()

  // --session-dir (opts.session_dir): opens it and registers every saved session (tier
  // disk). Call before Start(); a no-op without a session dir. InvalidArgument if unusable.
  absl::Status OpenSessionDir();
  void Start();
  // Ends every request (finish reason shutdown), frees all sessions, joins the loop.
  void Stop();

  // Queues a request. ResourceExhausted when the wait queue is full, Unavailable while
  // draining or stopped. On OK the stream will receive exactly one final event.
  absl::Status Submit(std::shared_ptr<RequestStream> stream);

  // Stops admitting new requests; running and queued ones may finish within `grace`,
  // after which they end with finish reason shutdown.
  void BeginDrain(absl::Duration grace);
  bool draining() const { return draining_.load(); }
  // Blocks until no request is running or waiting, or `timeout` passes. True if idle.
  bool WaitIdle(absl::Duration timeout);

  int running() const { return running_count_.load(); }
  int waiting() const { return waiting_count_.load(); }
  const SchedulerOptions& options() const { return opts_; }

  // Stored sessions (named state kept between Generate calls).
  using InfoCallback = std::function<void(absl::StatusOr<StoredSessionInfo>)>;
  void CreateSession(std::string name, InfoCallback done);
  void GetSession(std::string name, InfoCallback done);
  void DeleteSession(std::string name, std::function<void(absl::Status)> done);
  // The session API (server/scheduler_sessions.cc, docs/SESSIONS.md). Names of new
  // sessions: 1-128 of [A-Za-z0-9._:-]. `tokens` become pending; whole prefill chunks of
  // them are fed at once (PrefillStored), the rest by the next generate, cut as one
  // request over the whole history would be. An ephemeral
  // session (client-held state) is never listed, saved or moved to disk.
  void CreateSession(std::string name, std::vector<int32_t> tokens, bool ephemeral,
                     InfoCallback done);
  void AppendToSession(std::string name, std::vector<int32_t> tokens, InfoCallback done);
  void ForkSession(std::string source, std::string name, InfoCallback done);
  using BytesCallback = std::function<void(absl::StatusOr<std::string>)>;
  // The snapshot bytes (engine/snapshot.h); `remove` deletes the session afterwards.
  void SnapshotSession(std::string name, bool remove, BytesCallback done);
  // A new session from snapshot bytes; InvalidArgument with the reason for bad bytes.
  void RestoreSession(std::string name, std::string bytes, bool ephemeral, InfoCallback done);
  using ListCallback = std::function<void(std::vector<StoredSessionInfo>)>;
  void ListSessions(ListCallback done);

 private:
  struct Active;
  struct Stored {
    SessionId sid = 0;  // tier kBackend only
    std::vector<int32_t> pending;  // generated/prompt tokens not yet fed (kBackend only)
    absl::Time created, last_used;
    bool busy = false;
    // Tiers (server/session_tiers.cc). Outside the backend the pending tokens live in
    // the snapshot bytes.
    SessionTier tier = SessionTier::kBackend;
    std::shared_ptr<const std::string> snapshot;  // kHost: the serialized session
    size_t tier_bytes = 0;     // kHost: snapshot size; kDisk: file size
    long long tokens_seen = 0, pending_count = 0;  // cached while not in the backend
    bool saved = false;        // a file holds it (current when tier == kDisk)
    size_t saved_bytes = 0;    // that file's size
    bool ephemeral = false;
    // Background saves (server/session_writer.h): `version` counts the uses that may have
    // changed the state; a save in flight has write_id != 0 and snapshots write_version.
    uint64_t version = 0, write_version = 0, write_id = 0;
    absl::Time next_save = absl::InfinitePast();  // after a failed save: not before this
  };

  void Loop();
  void RunCommands(std::deque<std::function<void()>>* cmds);
  void Admit(absl::Time now);
  bool StartActive(std::shared_ptr<RequestStream> s, absl::Time now);
  void CheckEndings(absl::Time now);
  bool RunStep();
  void HandleToken(Active& a, float* logits, absl::Time now);
  // The rest of HandleToken once a token is chosen (on the host or by the backend).
  void EmitToken(Active& a, SampleResult r, absl::Time now);
  void Finish(Active& a, FinishReason reason, absl::Status status, GenerateEvent ev);
  void FinishWaiting(const std::shared_ptr<RequestStream>& s, FinishReason reason,
                     absl::Status status);
  void ExpireStored(absl::Time now);
  void UpdateGauges();
  StoredSessionInfo InfoOf(const std::string& name, const Stored& st) const;
  // Tiers (server/session_tiers.cc; loop thread).
  absl::Status LoadStored(const std::string& name, Stored& st);  // into the backend
  absl::StatusOr<std::string> SnapshotOf(const std::string& name, const Stored& st);
  absl::Status MoveDown(const std::string& name, Stored& st);
  // Enforces the tier budgets, with room for `extra_backend_bytes` more in the backend.
  // `background` (housekeeping, no request waiting): host -> disk moves become background
  // saves instead of writes on the loop thread.
  absl::Status MakeRoom(size_t extra_backend_bytes, bool host_must_fit = true, bool background = false);
  // Background saves: submit one (a session in the backend or host tier), and apply the
  // finished ones (every loop iteration; at shutdown after SessionWriter::Drain).
  void StartBackgroundSave(const std::string& name, Stored& st, absl::Time now);
  void FinishBackgroundSaves(absl::Time now);
  bool Writing(const std::string& name) const { return writing_names_.count(name) != 0; }
  void WarnDiskFull(const std::string& name, absl::Time now);
  void DropStored(std::map<std::string, Stored>::iterator it, bool remove_file);
  void SaveAllStored();         // shutdown: every live session to disk
  void UpdateTierGauges();      // sessions and bytes in the host and disk tiers
  // Create/append: feeds whole --prefill-chunk chunks of the pending tokens (at least one
  // token stays pending), one chunk per loop iteration, the session busy meanwhile; then
  // `done`. The cuts are those a generate over the pending tokens would make (exact).
  void PrefillStored(const std::string& name, InfoCallback done);
  absl::Status UseStored(const std::string& name, Stored& st, const GenerateRequest& req);
  // Prefix cache hooks (server/scheduler_prefix.cc; loop thread).
  void MakePrefixCache();
  absl::StatusOr<SessionId> NewSession(const std::vector<int32_t>& prompt, size_t* fed,
                                       size_t* shared, std::vector<float>* logits);
  bool EvictPrefixCheckpoint();
  void CheckpointPrompt(const std::vector<int32_t>& prompt, size_t start, size_t shared,
                        size_t fed, SessionId sid, const float* logits);
  bool CheckpointAtFinish(const std::vector<int32_t>& feed, size_t fed, SessionId sid,
                          FinishReason reason);
  bool Post(std::function<void()> cmd);  // false once stopped

  std::unique_ptr<Backend> backend_;
  const Tokenizer* tokenizer_;
  const SchedulerOptions opts_;
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
  std::atomic<int> running_count_{0};
  std::atomic<int> waiting_count_{0};
  std::thread thread_;

  // Loop thread only.
  std::vector<std::unique_ptr<Active>> active_;
  std::map<std::string, Stored> stored_;
  std::unique_ptr<SessionFiles> files_;  // --session-dir, or null
  std::unique_ptr<SessionWriter> writer_;  // with files_ (declared after it: destroyed first)
  uint64_t next_write_id_ = 1;
  std::map<std::string, int> writing_names_;  // names with background saves in flight
  absl::Time last_disk_full_warning_ = absl::InfinitePast();
  absl::Time last_expiry_check_;
  std::vector<int32_t> unspellable_;  // ids with no tokenizer bytes (id 0 = end of text excluded)
  std::unique_ptr<PrefixCache> prefix_;  // null when off; declared after backend_
};

}  // namespace rwkvx
