// The one internal request the frontends translate to (GenerateRequest) and the event
// stream they read back (RequestStream).
//
// Ownership and threads: a RequestStream is shared (std::shared_ptr) by the frontend that
// created it and the scheduler loop. The scheduler pushes events (never blocks: events go
// into a bounded in-memory queue; when a slow reader lets it overflow the request is
// cancelled). The frontend pops events from any thread and may Cancel() from any thread.
// The notify callback is invoked by the pushing thread (the scheduler loop) after each
// push, without the stream's lock held; it must only schedule work (post to an executor),
// never block.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling/grammar/token_masks.h"
#include "engine/sampling/sampler.h"
#include "engine/session_state.h"

namespace rwkvx {

enum class FinishReason {
  kNone,       // not finished
  kStop,       // stop token, stop string or end of text
  kLength,     // max_tokens
  kCancelled,  // client went away
  kTimeout,    // deadline passed
  kShutdown,   // drain grace period ran out
  kSlowClient, // the client read too slowly (stream buffer overflow)
  kError,      // backend error
};
// "stop", "length", "cancelled", "timeout", "shutdown", "slow_client", "error".
const char* FinishReasonName(FinishReason r);

struct GenerateRequest {
  std::string id;                      // for logs
  std::vector<int32_t> prompt;         // token ids, non-empty (validated by the service)
  SamplingParams sampling;
  int max_tokens = 16;
  std::vector<std::string> stop_strings;  // generation ends before any of these
  std::vector<int32_t> stop_tokens;       // generation ends at any of these (not emitted)
  bool stop_at_end_of_text = true;        // token 0
  bool logprobs = false;                  // fill TokenEvent::logprob / top
  // End of text and stop_tokens are banned until this many tokens were generated.
  int min_tokens = 0;
  // Structured output: every generated token is allowed by this grammar (compiled by the
  // service, shared read-only); the request ends with kStop when the grammar is complete
  // and allows nothing more, or at end of text once it is complete. Null: unconstrained.
  std::shared_ptr<const grammar::TokenGrammar> grammar;
  absl::Time deadline = absl::InfiniteFuture();
  std::string session_name;  // non-empty: continue a stored session (gRPC sessions)
  // Start from this initial state (--initial-state) instead of zeros; `initial_space`
  // keeps its prefix-cache checkpoints apart (server/initial_states.h). Null/0: zeros.
  std::shared_ptr<const SessionState> initial_state;
  int initial_space = 0;
  absl::Time arrival = absl::Now();  // set by the service when the request is built
};

struct TokenEvent {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
};

// One step's output for a request: tokens (usually one) and the text that became safe
// to emit (complete UTF-8, not a possible stop-string prefix). `final` is set on the
// last event, which may also carry tokens/text.
struct GenerateEvent {
  std::vector<TokenEvent> tokens;
  std::string text;
  bool final = false;
  FinishReason finish = FinishReason::kNone;
  absl::Status status;  // non-OK only with finish == kError/kShutdown/kTimeout details
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose state came from the prefix cache
};

class RequestStream {
 public:
  RequestStream(GenerateRequest req, size_t max_buffered_bytes)
      : request_(std::move(req)), max_buffered_bytes_(max_buffered_bytes) {}

  const GenerateRequest& request() const { return request_; }
  GenerateRequest& mutable_request() { return request_; }  // before Submit only

  // Frontend side (any thread).
  // The callback runs on the scheduler thread or its notifier thread (stream_notifier.h),
  // outside the stream's lock, so a call that
  // began before SetNotify(nullptr) may still be running after it returns: the callback
  // must own (shared_ptr) or weakly reference what it touches, never a raw `this`.
  void SetNotify(std::function<void()> fn);
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  // Pops all pending events into `out` (appends). Returns false if none were pending.
  bool PopAll(std::vector<GenerateEvent>* out);
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // Scheduler side (the loop thread). Returns false (and drops the event) if the
  // buffer would overflow; the caller then ends the request as kSlowClient. With
  // `notify_later`, the reader is not woken here: *notify_later says whether the caller
  // must call Notify() (true when the reader had drained every earlier event; otherwise a
  // wake-up is already due and will find this event too).
  bool Push(GenerateEvent ev, bool* notify_later = nullptr);
  // The final event always fits (it replaces the overflow policy).
  void PushFinal(GenerateEvent ev);
  // Runs the reader's callback (if one is set). Any thread.
  void Notify();

 private:

  GenerateRequest request_;
  const size_t max_buffered_bytes_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> finished_{false};
  std::mutex mu_;
  std::deque<GenerateEvent> events_;
  size_t buffered_bytes_ = 0;
  std::function<void()> notify_;
};

}  // namespace rwkvx
