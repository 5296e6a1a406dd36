// The one front door of the server: every frontend (HTTP, gRPC) calls Service and never
// the scheduler. It owns validation (one prompt check for generation and the session
// API), tokenization, limits, the fan-out of `n` choices, the session API and the
// client-held flow (a request that carries its state as snapshot bytes). Frontends only
// translate their wire format into GenerateParams / PromptInput and render what comes back.
//
// Ownership: ServeMain owns the Service; it outlives the frontends. The Scheduler,
// Tokenizer and ModelDescription it refers to outlive it.
// Threads: every method may be called from any thread. Tokenization and validation run on
// the caller's thread, never on the scheduler's loop thread. Callbacks of the async
// methods run exactly once: on the scheduler's loop thread, or on the caller's thread when
// the call is refused before it reaches the loop (bad input, scheduler stopped). They must
// not block: post to the frontend's executor or complete a gRPC reactor, and never call
// back into the Service while holding a lock the callback takes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/request.h"
#include "server/service/chat_format.h"
#include "server/service/response_generation.h"
#include "server/service/structured_output.h"
#include "server/session_append.h"
#include "server/session_info.h"

namespace rwkvx {

class Scheduler;  // server/scheduling/scheduler.h; only the Service talks to it
class InitialStates;  // server/initial_states.h
struct InitialState;

struct ServiceLimits {
  int max_prompt_tokens = 131072;  // per request and per session create/append
  int max_tokens = 4096;          // per request, upper bound for max_tokens
  int default_max_tokens = 256;   // when the request gives none
  int max_n = 8;                  // choices per request
  int max_stop_strings = 8;
  int max_stop_bytes = 256;
  int max_logit_bias = 1024;  // entries of logit_bias
  absl::Duration request_timeout = absl::Minutes(10);
  size_t stream_buffer_bytes = size_t{1} << 20;  // per request, events not yet read
};

struct ModelDescription {
  std::string id;           // served model name (what clients pass as `model`)
  std::string description;  // e.g. "random weights (no trained model loaded)"
  std::string tokenizer;    // "world" or "bytes"
  std::string backend;      // "cpu" or "cuda"
  int vocab = 0;
  bool random_weights = false;
  int64_t created_unix = 0;
  std::vector<std::string> initial_states;  // --initial-state names (/v1/models lists them)
};

// A prompt as the client gave it: text or token ids, at most one of them.
struct PromptInput {
  std::optional<std::string> text;
  std::optional<std::vector<int64_t>> ids;
};

// The frontend-neutral request (unset optionals take the defaults).
struct GenerateParams {
  std::string model;
  PromptInput prompt;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature, top_p, presence_penalty, frequency_penalty;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int64_t> stop_token_ids;
  std::optional<int64_t> min_tokens;  // end of text and stop tokens held back until then
  std::vector<std::pair<int64_t, double>> logit_bias;  // (token id, bias in [-100, 100])
  OutputFormat output_format;  // structured output (response_format, grammar)
  bool logprobs = false;
  int64_t top_logprobs = 0;
  int64_t n = 1;
  bool ignore_eos = false;
  std::string session_id;
  std::string initial_state;  // a --initial-state name; "" = zeros
  std::string request_id;
  std::optional<absl::Duration> timeout;
};

// One generation from client-held state (Service::GenerateFromSnapshot): an ephemeral
// session (restored from the client's snapshot bytes, or empty), one stream generating
// from it, and at the end the session's new snapshot. Shared by the frontend call that
// reads the stream; any thread. Dropped without Finish, it deletes the session.
class ClientHeldGeneration {
 public:
  using BytesCallback = std::function<void(absl::StatusOr<std::string>)>;
  ClientHeldGeneration(Scheduler* scheduler, std::string session,
                       std::shared_ptr<RequestStream> stream);
  ~ClientHeldGeneration();
  ClientHeldGeneration(const ClientHeldGeneration&) = delete;
  ClientHeldGeneration& operator=(const ClientHeldGeneration&) = delete;

  const std::shared_ptr<RequestStream>& stream() const { return stream_; }
  // Call once, with the stream's final event. A generation that ended normally: `done`
  // gets the session's new snapshot bytes (on the loop thread). One that failed or was
  // cancelled: `done` gets the error at once, on the caller's thread. Either way the
  // ephemeral session is deleted.
  void Finish(const GenerateEvent& last, BytesCallback done);

 private:
  Scheduler* const scheduler_;
  const std::string session_;
  const std::shared_ptr<RequestStream> stream_;
  std::atomic<bool> finished_{false};
};

class Service {
 public:
  using SessionCallback = std::function<void(absl::StatusOr<StoredSessionInfo>)>;
  using SessionListCallback = std::function<void(std::vector<StoredSessionInfo>)>;
  using BytesCallback = std::function<void(absl::StatusOr<std::string>)>;
  using DoneCallback = std::function<void(absl::Status)>;
  using ClientHeldCallback =
      std::function<void(absl::StatusOr<std::shared_ptr<ClientHeldGeneration>>)>;

  Service(Scheduler* scheduler, const Tokenizer* tokenizer, ModelDescription model,
          ServiceLimits limits);
  // The --initial-state registry (may stay unset: no initial states). Call before serving;
  // it must outlive the Service.
  void SetInitialStates(const InitialStates* states) { initial_states_ = states; }

  // Validates, tokenizes and submits one stream per choice (n). Errors: InvalidArgument
  // (bad values), NotFound (unknown model), ResourceExhausted (queue full), Unavailable
  // (draining). On error nothing stays submitted.
  absl::StatusOr<std::vector<std::shared_ptr<RequestStream>>> Generate(const GenerateParams& p);
  // Generate from client-held state: restores an ephemeral session from `snapshot` (none:
  // an empty one), generates `p` (n = 1, no session_id) from it. `started` gets the
  // generation (read its stream, then Finish it for the new snapshot) or the error;
  // nothing is left behind on error.
  void GenerateFromSnapshot(const GenerateParams& p, std::optional<std::string> snapshot,
                            ClientHeldCallback started);

  // One turn of /v1/responses (response_generation.h): `gen` holds the generation's
  // parameters (its prompt and session_id must be empty), `turn` the new messages, the
  // response continued and whether to store this one. `started` gets the generation (read
  // its stream, then Finish it) or the error: NotFound when `turn.previous` is not stored
  // (expired or deleted), FailedPrecondition while it is in use, and Generate's errors.
  // Nothing is left behind on error.
  using ResponseCallback =
      std::function<void(absl::StatusOr<std::shared_ptr<ResponseGeneration>>)>;
  void CreateResponse(const GenerateParams& gen, ResponseTurn turn, ResponseCallback started);

  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& model,
                                                const std::string& text) const;
  // The bytes of the tokens (may be invalid UTF-8).
  absl::StatusOr<std::string> Detokenize(const std::string& model,
                                         const std::vector<int64_t>& ids) const;
  absl::Status CheckModel(const std::string& model) const;

  // The session API (docs/SESSIONS.md). A `name` left out is picked ("sess-<hex>"); given
  // names are 1-128 of [A-Za-z0-9._:-]. The prompt of create/append is optional and may
  // be empty; its tokens become pending (whole --prefill-chunk chunks are fed at once).
  // `initial_state`: a --initial-state name the session starts from ("" = zeros).
  void CreateSession(std::optional<std::string> name, PromptInput prompt, SessionCallback done,
                     const std::string& initial_state = "");
  // `control` (optional, server/session_append.h): progress events after each prefill
  // chunk (tokens of this append fed so far, of its total), and a cancel for a client that
  // went away: the append ends after the running chunk, `done` gets Cancelled, and the
  // session keeps what was fed (a chunk boundary) with the rest of the append dropped.
  void AppendToSession(std::string name, PromptInput prompt, SessionCallback done,
                       std::shared_ptr<AppendControl> control = nullptr);
  void ForkSession(std::string source, std::optional<std::string> name, SessionCallback done);
  void SnapshotSession(std::string name, BytesCallback done);
  // InvalidArgument with the reason for bad bytes.
  void RestoreSession(std::optional<std::string> name, std::string bytes, SessionCallback done);
  void GetSession(std::string name, SessionCallback done);
  void ListSessions(SessionListCallback done);
  void DeleteSession(std::string name, DoneCallback done);

  const ModelDescription& model() const { return model_; }
  const ServiceLimits& limits() const { return limits_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  bool Ready() const;  // admitting requests (false once draining)
  bool Idle() const;   // no request running or waiting
  size_t max_snapshot_bytes() const;  // the largest snapshot a client may upload

 private:
  // The one prompt check: text (valid UTF-8, tokenized here) or ids (in the vocabulary),
  // not both; `required`: one must be given; `may_be_empty`: it may hold no token; at most
  // --max-prompt-tokens tokens.
  absl::StatusOr<std::vector<int32_t>> PromptTokens(const PromptInput& prompt, bool required,
                                                    bool may_be_empty) const;
  // Validates and tokenizes `p` into one stream per choice, not yet submitted.
  absl::StatusOr<std::vector<std::shared_ptr<RequestStream>>> BuildStreams(const GenerateParams& p) const;
  // The --initial-state called `name`; InvalidArgument naming the ones there are.
  absl::StatusOr<const InitialState*> FindInitialState(const std::string& name) const;
  // logit_bias, min_tokens and the output format (compiled here) into `req`.
  absl::Status SetOutputControls(const GenerateParams& p, GenerateRequest* req) const;

  Scheduler* scheduler_;
  const Tokenizer* tokenizer_;
  ModelDescription model_;
  ServiceLimits limits_;
  const InitialStates* initial_states_ = nullptr;
  std::unique_ptr<StructuredOutputCompiler> structured_;
};

}  // namespace rwkvx
