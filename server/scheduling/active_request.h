// ActiveRequest: one running request on the scheduler's loop thread: its planner
// Sequence (what is fed, what is left), its backend session, the sampler, the
// detokenizer, the stop-text matcher, the grammar matcher of structured output (the
// allowed-token mask applied to each logits row before sampling), and how tokens become
// events on its RequestStream.
// What to do with the session when the request ends (a stored session released, a
// checkpoint adopted by the prefix cache, or freed) is the scheduler's (Scheduler::Finish).
//
// Ownership: owned by the scheduler (its list of running requests); shares the stream
// with the frontend, which reads it on its own threads (RequestStream is thread-safe).
// Threads: loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "engine/sampling/grammar/matcher.h"
#include "engine/sampling/sampler.h"
#include "server/scheduling/stream_notifier.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/request.h"
#include "server/scheduling/step_planner.h"
#include "server/scheduling/stop_text.h"
#include "server/scheduling/stream_writer.h"

namespace rwkvx {

class ServerMetrics;

// How a request ends: its reason, its status and its last event (text held back, the
// token that ended it).
struct Ending {
  FinishReason reason = FinishReason::kStop;
  absl::Status status;
  GenerateEvent event;
  // A request with a StreamWriter: event.text is not computed yet; the writer decodes
  // event.tokens and, with flush, what its decoder holds back (StreamWriter::Final).
  bool flush = false;
};

class ActiveRequest;

// A generated token of a request with a StreamWriter, taken, decided on (the feed, the
// sampler, the stop checks) and counted in the metrics, whose hand-over to the writer
// (ActiveRequest::Publish) waits until the scheduler has launched the next step.
struct DeferredToken {
  ActiveRequest* req;
  TokenEvent token;
};

class ActiveRequest {
 public:
  // `tok` must outlive the request. With `notifier` (the scheduler's), a request without
  // stop strings gets a StreamWriter: its events are decoded and pushed on the notifier's
  // thread (Emit and End post them there, in order).
  ActiveRequest(std::shared_ptr<RequestStream> s, const Tokenizer* tok, StreamNotifier* notifier = nullptr);

  // Masks the ids the tokenizer cannot spell in `logits` [V], the ids min_tokens still
  // holds back, and what the grammar does not allow; then samples on the host.
  SampleResult SampleRow(float* logits, int vocab, const std::vector<int32_t>& unspellable);
  // Whether the backend may draw this request's next token: top_logprobs need the logits
  // row on the host. A grammar goes along as a mask (DeviceSampling::allowed).
  bool CanSampleOnDevice() const { return !sampler.NeedsLogitRows(); }
  // The backend's sampling spec: the sampler's (penalties, biases, the draw) plus the
  // unspellable ids, the min_tokens bans and the grammar's mask of allowed tokens.
  void DeviceSpec(const std::vector<int32_t>& unspellable, DeviceSampling* out);
  // The spec of this request's current step (refilled every step; its lists keep their
  // capacity, so a step costs no allocation per request).
  DeviceSampling spec;
  // Records a chosen token: appends it to the feed (fed next step, or kept pending by a
  // stored session) and streams it, or returns how the request ends (a stop token or
  // stop text, max_tokens, a client too slow to read).
  // With `notifier`, the stream's reader is woken from the notifier's thread (after the
  // step's Flush) instead of here; with a StreamWriter the event goes there whole.
  // With `defer`, a token that goes to a StreamWriter and does not end the request is
  // appended there instead of posted (Publish posts it later).
  std::optional<Ending> Emit(SampleResult r, absl::Time now, ServerMetrics* metrics,
                             StreamNotifier* notifier = nullptr, std::vector<DeferredToken>* defer = nullptr);
  void Publish(DeferredToken& d);
  // Marks the request done and pushes its final event (with the token counts).
  void End(Ending e, absl::Time now, ServerMetrics* metrics);
  // The StreamWriter's reader fell too far behind: the request must end (slow_client).
  bool WriterSlow() const { return writer_ && writer_->slow(); }

  std::shared_ptr<RequestStream> stream;
  const GenerateRequest& req;
  SessionId sid = 0;
  std::string stored_name;  // "" for a session that lives only for this request
  Sequence seq;             // the planner's view; seq.done once ended
  uint64_t order = 0;       // start order among the running sequences
  size_t cache_start = 0;   // prompt tokens that came from the prefix cache
  size_t cache_shared = 0;  // prompt tokens shared with a cached key
  std::vector<float> cached_logits;  // the whole prompt was cached: logits after it
  // Preempted: the session's state, exported to the host (sid 0 meanwhile).
  std::optional<SessionState> parked;
  int generated = 0;
  Sampler sampler;
  absl::Time admitted, last_token;

 private:
  // The ids banned because fewer than min_tokens were generated (end of text when it
  // stops, and the stop tokens); empty once min_tokens is reached.
  std::vector<int32_t> MinTokensBans() const;
  // Sets every logit the grammar does not allow next to -inf ([vocab] floats).
  void ApplyGrammarMask(float* logits, int vocab);

  const Tokenizer* tok_;
  std::unique_ptr<grammar::GrammarMatcher> matcher_;  // null without structured output
  std::vector<uint32_t> mask_;                        // scratch: the matcher's mask words
  StreamDecoder decoder_;
  StopTextMatcher stop_;
  StreamNotifier* notifier_;
  std::shared_ptr<StreamWriter> writer_;  // no stop strings and a notifier: text off-thread
};

// The final event of a request that never started (refused at admission, cancelled,
// timed out or shut down while waiting).
void EndUnstarted(const std::shared_ptr<RequestStream>& s, FinishReason reason,
                  absl::Status status, ServerMetrics* metrics);

}  // namespace rwkvx
