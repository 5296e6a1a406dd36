// HttpConnection: tokenization endpoints in vLLM's form (docs/API.md "Tokenize"), routed by
// the table in http_connection.cc:
//   POST /tokenize    {"prompt": text} or {"messages": [...]} -> {"count", "max_model_len", "tokens", ...}
//   POST /detokenize  {"tokens": [ids]}                        -> {"prompt": text}
// Pure request -> response on the connection's strand (no scheduler work).
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/http/http_connection.h"
#include "server/openai/openai_json.h"
#include "server/openai/openai_request.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;
using openai_json::Bad;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The text /tokenize tokenizes: `prompt` (or llama.cpp's `content`) as given, or `messages`
// (with `tools`, `tool_choice`, `parallel_tool_calls`) rendered exactly as
// /v1/chat/completions renders them. Sets *strs from return_token_strs.
absl::StatusOr<std::string> TokenizeText(const json& j, int max_depth, std::string* model, bool* strs) {
  const json* text = nullptr;
  json chat = json::object();
  for (const auto& [k, v] : j.items()) {
    if (v.is_null()) continue;
    if (k == "model") {
      if (!v.is_string()) return Bad("'model' must be a string");
      *model = v.get<std::string>();
    } else if (k == "prompt" || k == "content") {
      if (text) return Bad("give one of 'prompt' (or 'content') and 'messages'");
      if (!v.is_string()) return Bad(absl::StrCat("'", k, "' must be a string"));
      text = &v;
    } else if (k == "messages" || k == "tools" || k == "tool_choice" || k == "parallel_tool_calls") {
      chat[k] = v;
    } else if (k == "add_special_tokens") {
      // The RWKV tokenizers have no special tokens to add: either value gives the same ids.
      if (!v.is_boolean()) return Bad("'add_special_tokens' must be a boolean");
    } else if (k == "add_generation_prompt") {
      if (!v.is_boolean()) return Bad("'add_generation_prompt' must be a boolean");
      if (!v.get<bool>()) {
        return Bad("'add_generation_prompt': false is not supported: the chat format always ends with the "
                   "assistant's label (end the messages with an assistant message to continue it instead)");
      }
    } else if (k == "return_token_strs") {
      if (!v.is_boolean()) return Bad("'return_token_strs' must be a boolean");
      *strs = v.get<bool>();
    } else {
      return Bad(absl::StrCat("'", k.substr(0, 64), "' is not supported by /tokenize"));
    }
  }
  if (text) {
    if (chat.contains("messages")) return Bad("give one of 'prompt' (or 'content') and 'messages'");
    if (!chat.empty()) return Bad("'tools', 'tool_choice' and 'parallel_tool_calls' go with 'messages'");
    return text->get<std::string>();
  }
  if (!chat.contains("messages")) return Bad("'prompt' (a string) or 'messages' (a chat) is required");
  // The chat endpoint's own parsing: the same roles, parts, tool calls and tools' prompt.
  auto r = ParseOpenAiRequest(ApiKind::kChat, Dump(chat), max_depth);
  if (!r.ok()) return r.status();
  if (!r->params.prompt.text) return absl::InternalError("chat request without a prompt text");
  return *r->params.prompt.text;
}

}  // namespace

void HttpConnection::Tokenize(const PathParams&) {
  const Service& svc = *shared_->service;
  auto j = ParseJsonBody(req_.body(), shared_->opts.max_json_depth, /*allow_empty=*/false);
  if (!j.ok()) return SendError(j.status());
  std::string model;
  bool strs = false;
  auto text = TokenizeText(*j, shared_->opts.max_json_depth, &model, &strs);
  if (!text.ok()) return SendError(text.status());
  auto ids = svc.Tokenize(model, *text);
  if (!ids.ok()) return SendError(ids.status());
  json out = {{"count", ids->size()},
              {"max_model_len", svc.limits().max_prompt_tokens},
              {"tokens", *ids},
              {"token_strs", nullptr}};
  if (strs) {  // each token's own bytes, invalid UTF-8 (a split character) as U+FFFD
    json s = json::array();
    for (int32_t id : *ids) {
      StreamDecoder d(&svc.tokenizer());
      std::string t = d.Push(id);
      t += d.Flush();
      s.push_back(std::move(t));
    }
    out["token_strs"] = std::move(s);
  }
  Send(200, "application/json", Dump(out));
}

void HttpConnection::Detokenize(const PathParams&) {
  const Service& svc = *shared_->service;
  auto j = ParseJsonBody(req_.body(), shared_->opts.max_json_depth, /*allow_empty=*/false);
  if (!j.ok()) return SendError(j.status());
  std::string model;
  std::vector<int64_t> ids;
  bool has_tokens = false;
  for (const auto& [k, v] : j->items()) {
    if (v.is_null()) continue;
    if (k == "model") {
      if (!v.is_string()) return SendError(Bad("'model' must be a string"));
      model = v.get<std::string>();
    } else if (k == "tokens") {
      if (!v.is_array()) return SendError(Bad("'tokens' must be an array of token ids"));
      for (const json& t : v) {
        if (!t.is_number_integer()) return SendError(Bad("'tokens' must be an array of token ids (integers)"));
        ids.push_back(t.is_number_unsigned() && t.get<uint64_t>() > (uint64_t{1} << 62) ? -1 : t.get<int64_t>());
      }
      has_tokens = true;
    } else {
      return SendError(Bad(absl::StrCat("'", k.substr(0, 64), "' is not supported by /detokenize")));
    }
  }
  if (!has_tokens) return SendError(Bad("'tokens' is required"));
  auto bytes = svc.Detokenize(model, ids);  // checks the model and every id
  if (!bytes.ok()) return SendError(bytes.status());
  StreamDecoder d(&svc.tokenizer());
  std::string text;
  for (int64_t id : ids) text += d.Push(static_cast<int32_t>(id));
  text += d.Flush();
  Send(200, "application/json", Dump(json{{"prompt", text}}));
}

}  // namespace rwkvx
