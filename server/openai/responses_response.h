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
  // response.created, response.in_progress, response.output_item.added,
  // response.content_part.added.
  std::string Start(const ResponseView& v);
  std::string Delta(const ResponseView& v, const std::string& delta);  // output_text.delta
  // output_text.done, content_part.done, output_item.done, then response.completed or
  // response.incomplete; or response.failed when v.status is "failed".
  std::string End(const ResponseView& v);

 private:
  std::string Event(const char* type, std::string data_without_type);
  int seq_ = 0;
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
