// /v1/responses request parsing: a JSON body -> the generation's GenerateParams and the
// conversation turn (server/service/response_generation.h). Every field this server does
// not implement is refused with InvalidArgument naming it (never ignored). Pure functions
// over bytes, callable from any thread; never throw.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/openai/responses_tools.h"
#include "server/service/service.h"

namespace rwkvx {

struct ResponsesRequest {
  // model, max_tokens (max_output_tokens), temperature, top_p, output_format (text.format)
  GenerateParams params;
  ResponseTurn turn;      // input messages (instructions not yet added), previous, store
  std::optional<std::string> instructions;
  std::map<std::string, std::string> metadata;
  std::optional<std::string> user;
  std::string text_format = R"({"type":"text"})";  // text.format as given, for the response
  bool stream = false;
  ResponsesTools tools;  // tools / tool_choice / parallel_tool_calls (responses_tools.h)
  // Log-probabilities of the answer's tokens (include "message.output_text.logprobs", or
  // top_logprobs given): params.logprobs / params.top_logprobs are set.
  bool logprobs = false;
  // The call ids of the input's function_call items and of its function_call_output items
  // (each output must answer a call: one of these, or of the previous response).
  std::vector<std::string> call_ids, output_call_ids;
};

// Parses and type-checks the body (value ranges are checked later by the Service).
absl::StatusOr<ResponsesRequest> ParseResponsesRequest(std::string_view body, int max_json_depth);

}  // namespace rwkvx
