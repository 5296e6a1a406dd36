// Service: generation (validation, tokenization, fan-out of `n`), tokenize/detokenize and
// the scheduler's state the frontends may see. The session API and the client-held flow
// are in service_sessions.cc.
#include "server/service/service.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/initial_states.h"
#include "server/random_id.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {
namespace {

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

absl::Status CheckRange(const char* name, const std::optional<double>& v, double lo, double hi) {
  if (!v) return absl::OkStatus();
  if (!std::isfinite(*v) || *v < lo || *v > hi) {
    return Bad(absl::StrCat("'", name, "' must be between ", lo, " and ", hi));
  }
  return absl::OkStatus();
}

}  // namespace

Service::Service(Scheduler* scheduler, const Tokenizer* tokenizer, ModelDescription model,
                 ServiceLimits limits)
    : scheduler_(scheduler),
      tokenizer_(tokenizer),
      model_(std::move(model)),
      limits_(limits),
      structured_(std::make_unique<StructuredOutputCompiler>(tokenizer)) {}

absl::Status Service::CheckModel(const std::string& model) const {
  if (model.empty() || model == model_.id) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("The model '", model.substr(0, 200),
                                          "' does not exist; this server serves '", model_.id,
                                          "'"));
}

absl::StatusOr<std::vector<int32_t>> Service::Tokenize(const std::string& model,
                                                       const std::string& text) const {
  if (auto s = CheckModel(model); !s.ok()) return s;
  if (!IsValidUtf8(text)) return Bad("the text is not valid UTF-8");
  return tokenizer_->Encode(text);
}

absl::StatusOr<std::string> Service::Detokenize(const std::string& model,
                                                const std::vector<int64_t>& ids) const {
  if (auto s = CheckModel(model); !s.ok()) return s;
  std::vector<int32_t> v;
  v.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer_->VocabSize()) {
      return Bad(absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                              tokenizer_->VocabSize(), ")"));
    }
    v.push_back(static_cast<int32_t>(id));
  }
  return tokenizer_->DecodeBytes(v);
}

bool Service::Ready() const { return !scheduler_->draining(); }

bool Service::Idle() const { return scheduler_->running() == 0 && scheduler_->waiting() == 0; }

size_t Service::max_snapshot_bytes() const { return scheduler_->options().max_snapshot_bytes; }

absl::StatusOr<std::vector<int32_t>> Service::PromptTokens(const PromptInput& prompt,
                                                          bool required,
                                                          bool may_be_empty) const {
  const auto& text = prompt.text;
  const auto& ids = prompt.ids;
  if (text && ids) return Bad("give the prompt as text or as token ids, not both");
  std::vector<int32_t> out;
  if (text) {
    if (!IsValidUtf8(*text)) return Bad("the prompt is not valid UTF-8");
    out = tokenizer_->Encode(*text);
  } else if (ids) {
    out.reserve(ids->size());
    for (int64_t id : *ids) {
      if (id < 0 || id >= model_.vocab) {
        return Bad(absl::StrCat("prompt token id ", id, " is outside the vocabulary [0, ",
                                model_.vocab, ")"));
      }
      out.push_back(static_cast<int32_t>(id));
    }
  } else if (required) {
    return Bad("the prompt is missing");
  }
  if (out.empty() && !may_be_empty) return Bad("the prompt must not be empty");
  if (static_cast<int64_t>(out.size()) > limits_.max_prompt_tokens) {
    return Bad(absl::StrCat("the prompt has ", out.size(),
                            " tokens; this server accepts at most ", limits_.max_prompt_tokens,
                            " (--max-prompt-tokens)"));
  }
  return out;
}

absl::Status Service::SetOutputControls(const GenerateParams& p, GenerateRequest* req) const {
  if (static_cast<int>(p.logit_bias.size()) > limits_.max_logit_bias) {
    return Bad(absl::StrCat("'logit_bias' may hold at most ", limits_.max_logit_bias, " entries"));
  }
  std::vector<std::pair<int32_t, float>>& bias = req->sampling.logit_bias;
  for (const auto& [id, b] : p.logit_bias) {
    if (id < 0 || id >= model_.vocab) {
      return Bad(absl::StrCat("'logit_bias' token id ", id, " is outside the vocabulary [0, ",
                              model_.vocab, ")"));
    }
    if (!std::isfinite(b) || b < -100.0 || b > 100.0) {
      return Bad(absl::StrCat("'logit_bias' values must be between -100 and 100 (token ", id, ")"));
    }
    bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
  }
  std::sort(bias.begin(), bias.end());
  for (size_t i = 1; i < bias.size(); ++i) {
    if (bias[i].first == bias[i - 1].first) {
      return Bad(absl::StrCat("'logit_bias' names token ", bias[i].first, " twice"));
    }
  }
  if (p.min_tokens) {
    if (*p.min_tokens < 0 || *p.min_tokens > req->max_tokens) {
      return Bad("'min_tokens' must be between 0 and max_tokens");
    }
    req->min_tokens = static_cast<int>(*p.min_tokens);
  }
  auto g = structured_->Compile(p.output_format);
  if (!g.ok()) return g.status();
  req->grammar = std::move(*g);
  if (req->grammar && req->min_tokens > 0) {
    return Bad("'min_tokens' cannot be combined with structured output (the grammar decides where the output ends)");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::shared_ptr<RequestStream>>> Service::Generate(
    const GenerateParams& p) {
  auto streams = BuildStreams(p);
  if (!streams.ok()) return streams.status();
  for (size_t i = 0; i < streams->size(); ++i) {
    absl::Status s = scheduler_->Submit((*streams)[i]);
    if (!s.ok()) {
      for (size_t j = 0; j < i; ++j) (*streams)[j]->Cancel();
      return s;
    }
  }
  return streams;
}

absl::StatusOr<const InitialState*> Service::FindInitialState(const std::string& name) const {
  const InitialState* st = initial_states_ ? initial_states_->Find(name) : nullptr;
  if (st) return st;
  const std::vector<std::string> names = initial_states_ ? initial_states_->Names() : std::vector<std::string>{};
  return Bad(absl::StrCat("unknown initial_state '", name.substr(0, 100), "'; this server has ",
                          names.empty() ? "none (start it with --initial-state NAME=PATH)"
                                        : absl::StrCat("'", absl::StrJoin(names, "', '"), "'")));
}

absl::StatusOr<std::vector<std::shared_ptr<RequestStream>>> Service::BuildStreams(
    const GenerateParams& p) const {
  if (auto s = CheckModel(p.model); !s.ok()) return s;
  GenerateRequest req;
  req.id = p.request_id;
  // A stored session may continue from its pending tokens alone (empty prompt).
  auto prompt = PromptTokens(p.prompt, /*required=*/true,
                             /*may_be_empty=*/!p.session_id.empty());
  if (!prompt.ok()) return prompt.status();
  req.prompt = std::move(*prompt);
  // Lengths and counts.
  int64_t max_tokens = p.max_tokens.value_or(limits_.default_max_tokens);
  if (max_tokens < 1 || max_tokens > limits_.max_tokens) {
    return Bad(absl::StrCat("'max_tokens' must be between 1 and ", limits_.max_tokens));
  }
  req.max_tokens = static_cast<int>(max_tokens);
  if (p.n < 1 || p.n > limits_.max_n) {
    return Bad(absl::StrCat("'n' must be between 1 and ", limits_.max_n));
  }
  // Sampling.
  if (auto s = CheckRange("temperature", p.temperature, 0.0, 5.0); !s.ok()) return s;
  if (auto s = CheckRange("top_p", p.top_p, 0.0, 1.0); !s.ok()) return s;
  if (auto s = CheckRange("presence_penalty", p.presence_penalty, -2.0, 2.0); !s.ok()) return s;
  if (auto s = CheckRange("frequency_penalty", p.frequency_penalty, -2.0, 2.0); !s.ok()) return s;
  if (p.top_k && (*p.top_k < 0 || *p.top_k > model_.vocab)) {
    return Bad(absl::StrCat("'top_k' must be between 0 and ", model_.vocab));
  }
  if (p.top_logprobs < 0 || p.top_logprobs > 20) return Bad("'top_logprobs' must be between 0 and 20");
  req.sampling.temperature = static_cast<float>(p.temperature.value_or(1.0));
  req.sampling.top_p = static_cast<float>(p.top_p.value_or(1.0));
  req.sampling.top_k = static_cast<int>(p.top_k.value_or(0));
  req.sampling.presence_penalty = static_cast<float>(p.presence_penalty.value_or(0.0));
  req.sampling.frequency_penalty = static_cast<float>(p.frequency_penalty.value_or(0.0));
  req.logprobs = p.logprobs || p.top_logprobs > 0;
  req.sampling.top_logprobs = static_cast<int>(p.top_logprobs);
  // Stops.
  if (static_cast<int>(p.stop.size()) > limits_.max_stop_strings) {
    return Bad(absl::StrCat("at most ", limits_.max_stop_strings, " stop strings are allowed"));
  }
  for (const auto& s : p.stop) {
    if (s.empty()) return Bad("stop strings must not be empty");
    if (static_cast<int>(s.size()) > limits_.max_stop_bytes) {
      return Bad(absl::StrCat("stop strings must be at most ", limits_.max_stop_bytes, " bytes"));
    }
    if (!IsValidUtf8(s)) return Bad("a stop string is not valid UTF-8");
  }
  req.stop_strings = p.stop;
  for (int64_t id : p.stop_token_ids) {
    if (id < 0 || id >= model_.vocab) return Bad(absl::StrCat("stop token id ", id, " is out of range"));
    req.stop_tokens.push_back(static_cast<int32_t>(id));
  }
  req.stop_at_end_of_text = !p.ignore_eos;
  if (auto s = SetOutputControls(p, &req); !s.ok()) return s;
  req.session_name = p.session_id;
  if (!p.session_id.empty() && p.n != 1) return Bad("'n' must be 1 when continuing a session");
  if (!p.initial_state.empty()) {
    auto st = FindInitialState(p.initial_state);
    if (!st.ok()) return st.status();
    if (!p.session_id.empty())
      return Bad("'initial_state' cannot be combined with 'session_id': a stored session already has its state");
    req.initial_state = (*st)->state;
    req.initial_space = (*st)->space;
  }
  // Deadline.
  absl::Duration timeout = limits_.request_timeout;
  if (p.timeout && *p.timeout > absl::ZeroDuration() && *p.timeout < timeout) timeout = *p.timeout;
  req.arrival = absl::Now();
  req.deadline = req.arrival + timeout;

  uint64_t seed = p.seed ? *p.seed : RandomU64();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int64_t i = 0; i < p.n; ++i) {
    GenerateRequest r = req;
    r.sampling.seed = seed + static_cast<uint64_t>(i);
    if (p.n > 1) r.id = absl::StrCat(req.id, "/", i);
    streams.push_back(std::make_shared<RequestStream>(std::move(r), limits_.stream_buffer_bytes));
  }
  return streams;
}

}  // namespace rwkvx
