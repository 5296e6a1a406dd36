// The service layer between the frontends and the scheduler: validation, tokenization,
// limits, the chat prompt format, and fan-out of `n` choices. Frontends (HTTP, gRPC) only
// translate their wire format into GenerateParams and the RequestStream events back.
//
// Threads: every method may be called from any thread (the Tokenizer is immutable, the
// Scheduler's public calls are thread-safe). Owned by ServeMain; outlives the frontends.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/tokenizer.h"
#include "server/chat_format.h"
#include "server/request.h"
#include "server/scheduler.h"

namespace rwkvx {

struct ServiceLimits {
  int max_prompt_tokens = 8192;
  int max_tokens = 4096;          // per request, upper bound for max_tokens
  int default_max_tokens = 256;   // when the request gives none
  int max_n = 8;                  // choices per request
  int max_stop_strings = 8;
  int max_stop_bytes = 256;
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
};

// The frontend-neutral request (unset optionals take the defaults).
struct GenerateParams {
  std::string model;
  std::optional<std::string> prompt_text;
  std::optional<std::vector<int64_t>> prompt_ids;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature, top_p, presence_penalty, frequency_penalty;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int64_t> stop_token_ids;
  bool logprobs = false;
  int64_t top_logprobs = 0;
  int64_t n = 1;
  bool ignore_eos = false;
  std::string session_id;
  std::string request_id;
  std::optional<absl::Duration> timeout;
};

class Service {
 public:
  Service(Scheduler* scheduler, const Tokenizer* tokenizer, ModelDescription model,
          ServiceLimits limits);

  // Validates, tokenizes and submits one stream per choice (n). Errors: InvalidArgument
  // (bad values), NotFound (unknown model), ResourceExhausted (queue full), Unavailable
  // (draining). On error nothing stays submitted.
  absl::StatusOr<std::vector<std::shared_ptr<RequestStream>>> Generate(const GenerateParams& p);

  absl::StatusOr<std::vector<int32_t>> Tokenize(const std::string& model,
                                                const std::string& text) const;
  // The bytes of the tokens (may be invalid UTF-8).
  absl::StatusOr<std::string> Detokenize(const std::string& model,
                                         const std::vector<int64_t>& ids) const;
  absl::Status CheckModel(const std::string& model) const;

  const ModelDescription& model() const { return model_; }
  const ServiceLimits& limits() const { return limits_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  Scheduler& scheduler() { return *scheduler_; }
  bool Ready() const { return !scheduler_->draining(); }

 private:
  Scheduler* scheduler_;
  const Tokenizer* tokenizer_;
  ModelDescription model_;
  ServiceLimits limits_;
};

}  // namespace rwkvx
