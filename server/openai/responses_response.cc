// /v1/responses bodies and the response records (responses_response.h).
#include "server/openai/responses_response.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace rwkvx {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Opt(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// The log-probabilities of v.token_logprobs[from, to) (OpenAI's output_text logprobs).
json Logprobs(const ResponseView& v, size_t from, size_t to) {
  json out = json::array();
  for (size_t i = from; i < to && i < v.token_logprobs.size(); ++i) {
    const ResponseView::Logprob& t = v.token_logprobs[i];
    json top = json::array();
    for (const auto& [tok, lp] : t.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", Bytes(tok)}});
    out.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", Bytes(t.token)}, {"top_logprobs", top}});
  }
  return out;
}

json TextPart(const std::string& text, json logprobs = json::array()) {
  return {{"type", "output_text"}, {"text", text}, {"annotations", json::array()},
          {"logprobs", std::move(logprobs)}};
}

json MessageItem(const ResponseView& v, const char* status, bool with_part) {
  json content = json::array();
  if (with_part) content.push_back(TextPart(v.text, Logprobs(v, 0, v.token_logprobs.size())));
  return {{"id", v.message_id}, {"type", "message"}, {"role", "assistant"},
          {"status", status}, {"content", content}};
}

const char* ItemStatus(const ResponseView& v) {
  if (v.status == "completed") return "completed";
  if (v.status == "in_progress") return "in_progress";
  return "incomplete";
}

json CallItem(const ResponseView::Call& c, const char* status, bool with_arguments) {
  return {{"id", c.id}, {"type", "function_call"}, {"status", status}, {"call_id", c.call_id},
          {"name", c.name}, {"arguments", with_arguments ? c.arguments : ""}};
}

// The output items of a finished reply: the message (when it has text or nothing else), then
// the calls, in the order ResponseEvents opens them.
bool HasMessage(const ResponseView& v) { return !v.text.empty() || v.calls.empty(); }

json ParsedOr(const std::string& text, json fallback) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? fallback : j;
}

json ResponseObject(const ResponseView& v) {
  json output = json::array();
  if (v.status == "completed" || v.status == "incomplete") {
    if (HasMessage(v)) output.push_back(MessageItem(v, ItemStatus(v), true));
    for (const auto& c : v.calls) output.push_back(CallItem(c, ItemStatus(v), true));
  }
  json metadata = json::object();
  for (const auto& [k, val] : v.metadata) metadata[k] = val;
  json usage = nullptr;
  if (v.status == "completed" || v.status == "incomplete") {
    usage = {{"input_tokens", v.input_tokens},
             {"input_tokens_details", {{"cached_tokens", v.cached_tokens}}},
             {"output_tokens", v.output_tokens},
             {"output_tokens_details", {{"reasoning_tokens", 0}}},
             {"total_tokens", v.input_tokens + v.output_tokens}};
  }
  json error = nullptr;
  if (v.status == "failed") {
    error = {{"code", "server_error"}, {"message", v.error.message()}};
  }
  return {{"id", v.id},
          {"object", "response"},
          {"created_at", v.created_at},
          {"status", v.status},
          {"error", error},
          {"incomplete_details", v.status == "incomplete" ? json{{"reason", "max_output_tokens"}}
                                                          : json(nullptr)},
          {"instructions", Opt(v.instructions)},
          {"max_output_tokens", v.max_output_tokens ? json(*v.max_output_tokens) : json(nullptr)},
          {"metadata", metadata},
          {"model", v.model},
          {"output", output},
          {"parallel_tool_calls", v.parallel_tool_calls},
          {"previous_response_id", Opt(v.previous)},
          {"store", v.store},
          {"temperature", v.temperature},
          {"top_p", v.top_p},
          {"text", {{"format", json::parse(v.text_format, nullptr, false)}}},
          {"tool_choice", ParsedOr(v.tool_choice_json, "none")},
          {"top_logprobs", v.top_logprobs ? json(*v.top_logprobs) : json(nullptr)},
          {"tools", ParsedOr(v.tools_json, json::array())},
          {"truncation", "disabled"},
          {"usage", usage},
          {"user", Opt(v.user)}};
}

}  // namespace

void ResponseView::Finish(const GenerateEvent& last, int64_t input, int64_t cached) {
  status = last.finish == FinishReason::kLength ? "incomplete" : "completed";
  input_tokens = input;
  cached_tokens = cached;
  output_tokens = last.completion_tokens;
}

std::string ResponseJson(const ResponseView& v) { return Dump(ResponseObject(v)); }

std::string ResponseEvents::Event(const char* type, std::string data) {
  // `data` is a JSON object without its type and sequence number; they go first.
  std::string head = absl::StrCat("{\"type\":\"", type, "\",\"sequence_number\":", seq_++);
  if (data.size() > 2) absl::StrAppend(&head, ",", data.substr(1));
  else head += "}";
  return absl::StrCat("event: ", type, "\ndata: ", head, "\n\n");
}

std::string ResponseEvents::OpenMessage(const ResponseView& v) {
  message_index_ = next_index_++;
  std::string out = Event("response.output_item.added",
                          Dump({{"output_index", message_index_}, {"item", MessageItem(v, "in_progress", false)}}));
  out += Event("response.content_part.added",
               Dump({{"item_id", v.message_id}, {"output_index", message_index_}, {"content_index", 0},
                     {"part", TextPart("")}}));
  return out;
}

std::string ResponseEvents::Start(const ResponseView& v) {
  std::string out = Event("response.created", Dump({{"response", ResponseObject(v)}}));
  out += Event("response.in_progress", Dump({{"response", ResponseObject(v)}}));
  if (!v.tools) out += OpenMessage(v);
  return out;
}

std::string ResponseEvents::Delta(const ResponseView& v, const std::string& delta, size_t lp_from, size_t lp_to) {
  std::string out = message_index_ < 0 ? OpenMessage(v) : "";
  out += Event("response.output_text.delta",
               Dump({{"item_id", v.message_id}, {"output_index", message_index_}, {"content_index", 0},
                     {"delta", delta}, {"logprobs", Logprobs(v, lp_from, lp_to)}}));
  return out;
}

std::string ResponseEvents::CallDelta(const ResponseView& v, size_t k, const std::string& delta) {
  std::string out;
  const ResponseView::Call& c = v.calls[k];
  if (k >= call_index_.size()) {  // calls open in order
    call_index_.push_back(next_index_++);
    out += Event("response.output_item.added",
                 Dump({{"output_index", call_index_.back()}, {"item", CallItem(c, "in_progress", false)}}));
  }
  if (!delta.empty()) {
    out += Event("response.function_call_arguments.delta",
                 Dump({{"item_id", c.id}, {"output_index", call_index_[k]}, {"delta", delta}}));
  }
  return out;
}

std::string ResponseEvents::End(const ResponseView& v) {
  if (v.status == "failed") {
    return Event("response.failed", Dump({{"response", ResponseObject(v)}}));
  }
  std::string out;
  if (message_index_ < 0 && HasMessage(v)) out += OpenMessage(v);  // an empty reply: an empty message
  if (message_index_ >= 0) {
    out += Event("response.output_text.done",
                 Dump({{"item_id", v.message_id}, {"output_index", message_index_},
                       {"content_index", 0}, {"text", v.text},
                       {"logprobs", Logprobs(v, 0, v.token_logprobs.size())}}));
    out += Event("response.content_part.done",
                 Dump({{"item_id", v.message_id}, {"output_index", message_index_}, {"content_index", 0},
                       {"part", TextPart(v.text, Logprobs(v, 0, v.token_logprobs.size()))}}));
    out += Event("response.output_item.done",
                 Dump({{"output_index", message_index_}, {"item", MessageItem(v, ItemStatus(v), true)}}));
  }
  for (size_t k = 0; k < v.calls.size(); ++k) {
    if (k >= call_index_.size()) out += CallDelta(v, k, "");
    const ResponseView::Call& c = v.calls[k];
    out += Event("response.function_call_arguments.done",
                 Dump({{"item_id", c.id}, {"output_index", call_index_[k]}, {"arguments", c.arguments}}));
    out += Event("response.output_item.done",
                 Dump({{"output_index", call_index_[k]}, {"item", CallItem(c, ItemStatus(v), true)}}));
  }
  out += Event(v.status == "incomplete" ? "response.incomplete" : "response.completed",
               Dump({{"response", ResponseObject(v)}}));
  return out;
}

void ResponseRecords::Put(const ResponseView& v) {
  std::lock_guard<std::mutex> l(mu_);
  if (by_id_.insert_or_assign(v.id, v).second) order_.push_back(v.id);
  while (by_id_.size() > max_ && !order_.empty()) {
    by_id_.erase(order_.front());
    order_.pop_front();
  }
  if (order_.size() > 2 * max_ + 16) {  // drop erased ids from the order
    std::deque<std::string> kept;
    for (auto& id : order_) if (by_id_.count(id)) kept.push_back(std::move(id));
    order_.swap(kept);
  }
}

std::optional<ResponseView> ResponseRecords::Get(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

bool ResponseRecords::Erase(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  return by_id_.erase(id) != 0;
}

}  // namespace rwkvx
