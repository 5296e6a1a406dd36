#include "server/openai/openai_response.h"

#include "nlohmann/json.hpp"
#include "server/random_id.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

// usage of a response; prompt_tokens_details.cached_tokens counts the prompt tokens whose
// state came from the prefix cache (as in OpenAI's and vLLM's responses).
json UsageJson(int prompt, int completion, int cached) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json FinishJson(FinishReason r) {
  if (r == FinishReason::kNone) return nullptr;
  return FinishReasonName(r);
}

json Bytes(std::string_view s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

}  // namespace

OpenAiResponder::OpenAiResponder(ApiKind kind, std::string id, std::string model, int64_t created,
                                 const Tokenizer* tok, int n, bool logprobs, bool include_usage)
    : kind_(kind),
      id_(std::move(id)),
      model_(std::move(model)),
      created_(created),
      tok_(tok),
      logprobs_(logprobs),
      include_usage_(include_usage),
      choices_(n) {}

void OpenAiResponder::AddUsage(const GenerateEvent& ev, int index) {
  if (!ev.final) return;
  prompt_tokens_ = ev.prompt_tokens;
  cached_tokens_ = ev.cached_tokens;
  choices_[index].completion_tokens = ev.completion_tokens;
  choices_[index].finish = ev.finish;
}

std::string OpenAiResponder::LogprobsJson(const std::vector<TokenEvent>& toks,
                                          size_t text_offset) const {
  json out;
  if (kind_ == ApiKind::kChat) {
    json content = json::array();
    for (const auto& t : toks) {
      std::string_view b = tok_->TokenBytes(t.token);
      json tops = json::array();
      for (const auto& a : t.top) {
        std::string_view ab = tok_->TokenBytes(a.token);
        tops.push_back({{"token", std::string(ab)}, {"logprob", a.logprob}, {"bytes", Bytes(ab)}});
      }
      content.push_back({{"token", std::string(b)},
                         {"logprob", t.logprob},
                         {"bytes", Bytes(b)},
                         {"top_logprobs", tops}});
    }
    out = {{"content", content}};
  } else {
    json tokens = json::array(), lps = json::array(), tops = json::array(),
         offsets = json::array();
    size_t off = text_offset;
    for (const auto& t : toks) {
      std::string b(tok_->TokenBytes(t.token));
      tokens.push_back(b);
      lps.push_back(t.logprob);
      json m = json::object();
      for (const auto& a : t.top) m[std::string(tok_->TokenBytes(a.token))] = a.logprob;
      tops.push_back(m);
      offsets.push_back(off);
      off += b.size();
    }
    out = {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops},
           {"text_offset", offsets}};
  }
  return Dump(out);
}

std::string OpenAiResponder::Chunk(int index, const std::string& text,
                                   const std::vector<TokenEvent>& toks, FinishReason finish,
                                   bool role, const json* tool_calls, bool tool_finish) const {
  json choice = {{"index", index}};
  if (kind_ == ApiKind::kChat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (role || !text.empty()) delta["content"] = text;
    if (tool_calls) delta["tool_calls"] = *tool_calls;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs_ && !toks.empty() ? json::parse(LogprobsJson(toks, 0)) : json(nullptr);
  choice["finish_reason"] = tool_finish ? json("tool_calls") : FinishJson(finish);
  json chunk = {{"id", id_},
                {"object", kind_ == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", created_},
                {"model", model_},
                {"choices", json::array({choice})}};
  if (include_usage_) chunk["usage"] = nullptr;
  return "data: " + Dump(chunk) + "\n\n";
}

std::string OpenAiResponder::StreamStart() {
  if (kind_ != ApiKind::kChat) return "";
  std::string out;
  for (size_t i = 0; i < choices_.size(); ++i) {
    out += Chunk(static_cast<int>(i), "", {}, FinishReason::kNone, /*role=*/true);
  }
  return out;
}

std::string OpenAiResponder::ToolChunks(int index, const GenerateEvent& ev) {
  Choice& c = choices_[index];
  ToolCallReader::Piece p = c.reader.Take(ev.text, ev.final);
  std::string out;
  if (!p.content.empty() || (logprobs_ && !ev.tokens.empty())) {
    out += Chunk(index, p.content, ev.tokens, FinishReason::kNone, false);
  }
  for (const ToolCallReader::CallDelta& d : p.calls) {
    json call = {{"index", d.index}};
    if (d.name) {
      c.call_ids.push_back(RandomId("call_"));
      call["id"] = c.call_ids.back();
      call["type"] = "function";
      call["function"] = {{"name", *d.name}, {"arguments", d.arguments}};
    } else {
      call["function"] = {{"arguments", d.arguments}};
    }
    json calls = json::array({call});
    out += Chunk(index, "", {}, FinishReason::kNone, false, &calls);
  }
  if (ev.final) {
    const bool tool_finish = ev.finish == FinishReason::kStop && c.reader.calls_complete();
    out += Chunk(index, "", {}, ev.finish, false, nullptr, tool_finish);
  }
  return out;
}

std::string OpenAiResponder::StreamEvent(int index, const GenerateEvent& ev) {
  AddUsage(ev, index);
  if (tools_) return ToolChunks(index, ev);
  std::string out;
  if (!echo_.empty() && !choices_[index].echoed) {
    choices_[index].echoed = true;
    out += Chunk(index, echo_, {}, FinishReason::kNone, false);
  }
  if (!ev.text.empty() || (logprobs_ && !ev.tokens.empty())) {
    out += Chunk(index, ev.text, ev.tokens, FinishReason::kNone, false);
  }
  if (ev.final) out += Chunk(index, "", {}, ev.finish, false);
  return out;
}

std::string OpenAiResponder::StreamEnd() {
  std::string out;
  if (include_usage_) {
    int completion = 0;
    for (const auto& c : choices_) completion += c.completion_tokens;
    json chunk = {{"id", id_},
                  {"object", kind_ == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                  {"created", created_},
                  {"model", model_},
                  {"choices", json::array()},
                  {"usage", UsageJson(prompt_tokens_, completion, cached_tokens_)}};
    out += "data: " + Dump(chunk) + "\n\n";
  }
  out += "data: [DONE]\n\n";
  return out;
}

std::string OpenAiResponder::StreamError(const std::string& error_json) {
  return "data: " + error_json + "\n\ndata: [DONE]\n\n";
}

void OpenAiResponder::Add(int index, const GenerateEvent& ev) {
  Choice& c = choices_[index];
  if (!c.echoed) {
    c.echoed = true;
    c.text = echo_;
  }
  c.text += ev.text;
  if (logprobs_) c.tokens.insert(c.tokens.end(), ev.tokens.begin(), ev.tokens.end());
  AddUsage(ev, index);
}

std::string OpenAiResponder::Body() const {
  json choices = json::array();
  int completion = 0;
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    completion += c.completion_tokens;
    json choice = {{"index", i}};
    choice["finish_reason"] = FinishJson(c.finish);
    if (kind_ == ApiKind::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      if (tools_) {
        std::string content;
        bool complete = false;
        std::vector<ToolCallText> calls = ReadToolCalls(c.text, &content, &complete);
        if (complete) {
          json list = json::array();
          for (const ToolCallText& t : calls) {
            list.push_back({{"id", RandomId("call_")}, {"type", "function"},
                            {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
          }
          choice["message"] = {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", list}};
          if (c.finish == FinishReason::kStop) choice["finish_reason"] = "tool_calls";
        }
      }
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = logprobs_ ? json::parse(LogprobsJson(c.tokens, 0)) : json(nullptr);
    choices.push_back(choice);
  }
  json body = {{"id", id_},
               {"object", kind_ == ApiKind::kChat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", model_},
               {"choices", choices},
               {"usage", UsageJson(prompt_tokens_, completion, cached_tokens_)}};
  return Dump(body);
}

}  // namespace rwkvx
