// /v1/responses bodies: the Response object (create, retrieve, stream events) and the SSE
// events of a streamed response, from one ResponseView; and ResponseRecords, the response
// objects a server keeps for retrieve and previous_response_id (their model state lives in
// the session store: server/service/response_generation.h).
//
// Threads: ResponseView and ResponseEvents belong to one HTTP request (its strand).
// ResponseRecords is shared by every connection: all its methods lock.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/request.h"

namespace rwkvx {

struct ResponseView {
  std::string id, message_id, model;
  int64_t created_at = 0;
  std::optional<std::string> instructions, previous, user;
  // The instructions the conversation's first turn gave (in the state of every response
  // continuing it); not rendered.
  std::optional<std::string> conversation_instructions;
  std::map<std::string, std::string> metadata;
  std::optional<int64_t> max_output_tokens;
  double temperature = 1.0, top_p = 1.0;
  bool store = true;
  std::string text_format = R"({"type":"text"})";  // the request's text.format (JSON)
  // Function tools (ResponsesTools): echoed as given; with `tools` on, the reply is read
  // with ToolCallReader into `text` and `calls` (output items: the message when it has
  // text or there is no call, then one function_call item per call).
  bool tools = false;
  std::string tools_json = "[]", tool_choice_json = R"("none")";
  bool parallel_tool_calls = false;
  struct Call {
    std::string id, call_id, name, arguments;  // id: the output item's ("fc_..."); call_id: "call_..."
  };
  std::vector<Call> calls;
  // include "message.output_text.logprobs": the answer's tokens, each with its alternatives.
  bool logprobs = false;
  std::optional<int> top_logprobs;  // as given (echoed)
  struct Logprob {
    std::string token;  // the token's bytes
    float logprob = 0;
    std::vector<std::pair<std::string, float>> top;
  };
  std::vector<Logprob> token_logprobs;
  // As it runs.
  std::string status = "in_progress";  // in_progress | completed | incomplete | failed
  std::string text;
  int64_t input_tokens = 0, cached_tokens = 0, output_tokens = 0;
  absl::Status error;  // status "failed"

  // The final event: status completed, or incomplete (max_output_tokens); the usage.
  void Finish(const GenerateEvent& last, int64_t input_tokens, int64_t cached_tokens);
};

// The Response object as JSON text.
std::string ResponseJson(const ResponseView& v);

// The SSE events of one streamed response, numbered in order (sequence_number).
class ResponseEvents {
 public:
  // response.created, response.in_progress, and (without tools) the message's
  // response.output_item.added and response.content_part.added. With tools the items
  // open as the reply shows what it is (Delta, CallDelta).
  std::string Start(const ResponseView& v);
  // output_text.delta (opening the message item first where it is not open yet), with the
  // log-probabilities of `lp` (v.token_logprobs[lp_from, lp_to)) when v.logprobs.
  std::string Delta(const ResponseView& v, const std::string& delta, size_t lp_from = 0, size_t lp_to = 0);
  // More of v.calls[k]'s arguments (response.function_call_arguments.delta), opening its
  // function_call item (response.output_item.added) on the first.
  std::string CallDelta(const ResponseView& v, size_t k, const std::string& delta);
  // The open items' done events (the message: output_text.done, content_part.done,
  // output_item.done; each call: function_call_arguments.done, output_item.done), then
  // response.completed or response.incomplete; or response.failed when v.status is "failed".
  std::string End(const ResponseView& v);

 private:
  std::string Event(const char* type, std::string data_without_type);
  std::string OpenMessage(const ResponseView& v);
  int seq_ = 0;
  int next_index_ = 0;        // the next output item's output_index
  int message_index_ = -1;    // the message item's (-1: not open)
  std::vector<int> call_index_;  // each open call's
};

class ResponseRecords {
 public:
  explicit ResponseRecords(size_t max_records = 100000) : max_(max_records) {}
  void Put(const ResponseView& v);  // adds or replaces; past max_records the oldest goes
  std::optional<ResponseView> Get(const std::string& id) const;
  bool Erase(const std::string& id);

 private:
  const size_t max_;
  mutable std::mutex mu_;
  std::map<std::string, ResponseView> by_id_;
  std::deque<std::string> order_;  // ids in insertion order (may hold erased ones)
};

}  // namespace rwkvx
