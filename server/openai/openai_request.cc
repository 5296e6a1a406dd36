#include "server/openai/openai_request.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "engine/json_depth.h"
#include "engine/status_macros.h"
#include "server/openai/openai_output_fields.h"
#include "server/openai/openai_tools.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

const json* Field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status GetInt(const json& j, const char* name, std::optional<int64_t>* out) {
  const json* f = Field(j, name);
  if (!f) return absl::OkStatus();
  if (f->is_number_unsigned()) {
    uint64_t u = f->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(absl::StrCat("'", name, "' is too large"));
    }
    *out = static_cast<int64_t>(u);
    return absl::OkStatus();
  }
  if (!f->is_number_integer()) return Bad(absl::StrCat("'", name, "' must be an integer"));
  *out = f->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetNumber(const json& j, const char* name, std::optional<double>* out) {
  const json* f = Field(j, name);
  if (!f) return absl::OkStatus();
  if (!f->is_number()) return Bad(absl::StrCat("'", name, "' must be a number"));
  *out = f->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& j, const char* name, bool* out) {
  const json* f = Field(j, name);
  if (!f) return absl::OkStatus();
  if (!f->is_boolean()) return Bad(absl::StrCat("'", name, "' must be a boolean"));
  *out = f->get<bool>();
  return absl::OkStatus();
}

absl::Status GetString(const json& j, const char* name, std::string* out) {
  const json* f = Field(j, name);
  if (!f) return absl::OkStatus();
  if (!f->is_string()) return Bad(absl::StrCat("'", name, "' must be a string"));
  *out = f->get<std::string>();
  return absl::OkStatus();
}

absl::Status ParseStop(const json& j, std::vector<std::string>* out) {
  const json* f = Field(j, "stop");
  if (!f) return absl::OkStatus();
  if (f->is_string()) {
    out->push_back(f->get<std::string>());
    return absl::OkStatus();
  }
  if (!f->is_array()) return Bad("'stop' must be a string or an array of strings");
  for (const auto& s : *f) {
    if (!s.is_string()) return Bad("'stop' must be a string or an array of strings");
    out->push_back(s.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseTokenArray(const json& a, std::vector<int64_t>* out) {
  for (const auto& t : a) {
    if (!t.is_number_integer()) return Bad("token ids in 'prompt' must be integers");
    if (t.is_number_unsigned() &&
        t.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad("a token id in 'prompt' is out of range");
    }
    out->push_back(t.get<int64_t>());
  }
  return absl::OkStatus();
}

absl::Status ParsePrompt(const json& j, GenerateParams* p) {
  const json* f = Field(j, "prompt");
  if (!f) return Bad("'prompt' is required");
  if (f->is_string()) {
    p->prompt.text = f->get<std::string>();
    return absl::OkStatus();
  }
  if (!f->is_array()) return Bad("'prompt' must be a string, an array of token ids, or an array of one of those");
  if (f->empty()) return Bad("the prompt must not be empty");
  const json& first = (*f)[0];
  if (first.is_string() || first.is_array()) {
    if (f->size() != 1) return Bad("only one prompt per request is supported");
    if (first.is_string()) {
      p->prompt.text = first.get<std::string>();
      return absl::OkStatus();
    }
    std::vector<int64_t> ids;
    RWKVX_RETURN_IF_ERROR(ParseTokenArray(first, &ids));
    p->prompt.ids = std::move(ids);
    return absl::OkStatus();
  }
  std::vector<int64_t> ids;
  RWKVX_RETURN_IF_ERROR(ParseTokenArray(*f, &ids));
  p->prompt.ids = std::move(ids);
  return absl::OkStatus();
}

absl::Status ParseMessages(const json& j, std::string_view body, OpenAiRequest* r) {
  GenerateParams* p = &r->params;
  const json* f = Field(j, "messages");
  if (!f) return Bad("'messages' is required");
  if (!f->is_array()) return Bad("'messages' must be an array");
  std::vector<ChatMessage> msgs;
  for (const auto& m : *f) {
    if (!m.is_object()) return Bad("each message must be an object");
    ChatMessage cm;
    RWKVX_RETURN_IF_ERROR(GetString(m, "role", &cm.role));
    if (cm.role.empty()) return Bad("each message needs a 'role'");
    const json* c = Field(m, "content");
    if (c && c->is_string()) {
      cm.content = c->get<std::string>();
    } else if (c && c->is_array()) {
      for (const auto& part : *c) {
        if (!part.is_object()) return Bad("message content parts must be objects");
        std::string type, text;
        RWKVX_RETURN_IF_ERROR(GetString(part, "type", &type));
        if (type != "text") return Bad("only text content parts are supported");
        RWKVX_RETURN_IF_ERROR(GetString(part, "text", &text));
        cm.content += text;
      }
    } else if (c) {
      return Bad("message 'content' must be a string or an array of text parts");
    }
    RWKVX_RETURN_IF_ERROR(ParseMessageToolCalls(m, &cm));  // openai_tools.cc
    msgs.push_back(std::move(cm));
  }
  if (Field(j, "tools") || Field(j, "tool_choice") || Field(j, "functions") || Field(j, "function_call") ||
      Field(j, "parallel_tool_calls")) {
    auto ordered = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, false);
    auto tools = ApplyTools(j, ordered, &msgs, &p->output_format);
    if (!tools.ok()) return tools.status();
    r->tools = *tools;
  }
  auto prompt = BuildChatPrompt(msgs);
  if (!prompt.ok()) return prompt.status();
  p->prompt.text = std::move(*prompt);
  p->stop.push_back(kChatStop);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckJsonDepth(std::string_view body, int max_depth) {
  if (!JsonNestingWithin(body, max_depth))
    return Bad(absl::StrCat("the JSON body is nested deeper than ", max_depth, " levels"));
  return absl::OkStatus();
}

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                 int max_json_depth) {
  RWKVX_RETURN_IF_ERROR(CheckJsonDepth(body, max_json_depth));
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("the request body is not valid JSON (or not valid UTF-8)");
  if (!j.is_object()) return Bad("the request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  GenerateParams& p = r.params;
  RWKVX_RETURN_IF_ERROR(GetString(j, "model", &r.model));
  p.model = r.model;
  if (kind == ApiKind::kCompletion) {
    RWKVX_RETURN_IF_ERROR(ParsePrompt(j, &p));
  } else {
    RWKVX_RETURN_IF_ERROR(ParseMessages(j, body, &r));
  }
  std::optional<int64_t> max_tokens, max_completion_tokens, top_k, seed, n, logprobs_n, top_lp;
  RWKVX_RETURN_IF_ERROR(GetInt(j, "max_tokens", &max_tokens));
  RWKVX_RETURN_IF_ERROR(GetInt(j, "max_completion_tokens", &max_completion_tokens));
  p.max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  RWKVX_RETURN_IF_ERROR(GetNumber(j, "temperature", &p.temperature));
  RWKVX_RETURN_IF_ERROR(GetNumber(j, "top_p", &p.top_p));
  RWKVX_RETURN_IF_ERROR(GetInt(j, "top_k", &top_k));
  p.top_k = top_k;
  RWKVX_RETURN_IF_ERROR(GetNumber(j, "presence_penalty", &p.presence_penalty));
  RWKVX_RETURN_IF_ERROR(GetNumber(j, "frequency_penalty", &p.frequency_penalty));
  RWKVX_RETURN_IF_ERROR(GetInt(j, "seed", &seed));
  if (seed) p.seed = static_cast<uint64_t>(*seed);
  RWKVX_RETURN_IF_ERROR(GetInt(j, "n", &n));
  p.n = n.value_or(1);
  RWKVX_RETURN_IF_ERROR(ParseStop(j, &p.stop));
  RWKVX_RETURN_IF_ERROR(GetBool(j, "stream", &r.stream));
  RWKVX_RETURN_IF_ERROR(GetBool(j, "ignore_eos", &p.ignore_eos));
  RWKVX_RETURN_IF_ERROR(GetString(j, "initial_state", &p.initial_state));
  std::string user;
  RWKVX_RETURN_IF_ERROR(GetString(j, "user", &user));
  if (const json* so = Field(j, "stream_options")) {
    if (!so->is_object()) return Bad("'stream_options' must be an object");
    RWKVX_RETURN_IF_ERROR(GetBool(*so, "include_usage", &r.include_usage));
    for (const auto& [k, v] : so->items()) {  // nothing in it goes unread
      if (k == "include_usage" || v.is_null()) continue;
      if (k == "include_obfuscation" && v.is_boolean() && !v.get<bool>()) continue;  // none is ever added
      return Bad(absl::StrCat("'stream_options.", k.substr(0, 64), "' is not supported",
                              k == "include_obfuscation" ? " with true (events carry no obfuscation padding)" : "",
                              " (only include_usage)"));
    }
  }
  if (kind == ApiKind::kCompletion) {
    RWKVX_RETURN_IF_ERROR(GetInt(j, "logprobs", &logprobs_n));
    if (logprobs_n) {
      if (*logprobs_n < 0 || *logprobs_n > 20) return Bad("'logprobs' must be between 0 and 20");
      p.logprobs = true;
      p.top_logprobs = *logprobs_n;
    }
    std::optional<int64_t> best_of;
    RWKVX_RETURN_IF_ERROR(GetInt(j, "best_of", &best_of));
    if (best_of && *best_of != 1 && *best_of != p.n) return Bad("'best_of' is not supported");
    std::string suffix;
    RWKVX_RETURN_IF_ERROR(GetString(j, "suffix", &suffix));
    if (!suffix.empty()) return Bad("'suffix' is not supported");
  } else {
    RWKVX_RETURN_IF_ERROR(GetBool(j, "logprobs", &p.logprobs));
    RWKVX_RETURN_IF_ERROR(GetInt(j, "top_logprobs", &top_lp));
    if (top_lp) {
      if (!p.logprobs) return Bad("'top_logprobs' requires 'logprobs': true");
      p.top_logprobs = *top_lp;
    }
  }
  RWKVX_RETURN_IF_ERROR(ParseOutputFields(j, body, &r));  // openai_output_fields.cc
  return r;
}

}  // namespace rwkvx
