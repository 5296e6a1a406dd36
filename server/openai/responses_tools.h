// Function tools on /v1/responses (docs/API.md, "Responses: function tools"): the request's
// `tools` (flat: {"type": "function", "name", "description", "parameters", "strict"}),
// `tool_choice` and `parallel_tool_calls` into ApplyToolSpecs (server/service/tools.h: the
// tools' system message and grammar, as on chat), and the two input items that carry a
// tool round trip: `function_call` (a call the model made, passed back) and
// `function_call_output` (its result, a "tool" message). Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/service/chat_format.h"
#include "server/service/service.h"

namespace rwkvx {

// What the tool fields put in force, echoed in the response object.
struct ResponsesTools {
  bool calls = false;             // the reply may be calls (read it with ToolCallReader)
  std::string tools_json = "[]";  // the tools as given (key order kept)
  std::string choice_json = R"("none")";
  bool parallel = false;
};

// Reads `tools` / `tool_choice` / `parallel_tool_calls` of `body` (`text`: the body's bytes,
// for the schemas' key order). With tools in force it puts the tools' system message in
// front of `messages` and sets `format` to the calls' grammar; a JSON text.format already in
// `format` cannot be combined with that. Errors: InvalidArgument naming the field.
absl::StatusOr<ResponsesTools> ApplyResponsesTools(const nlohmann::json& body, std::string_view text,
                                                   std::vector<ChatMessage>* messages, OutputFormat* format);

// An input item of type "function_call" (appended to the assistant message before it, or
// as a new assistant message) or "function_call_output" (a "tool" message). `where` names
// the item in errors ("input[3]"); the call id goes to `call_id`.
absl::Status ParseFunctionCallItem(const nlohmann::json& item, const std::string& where,
                                   std::vector<ChatMessage>* out, std::string* call_id);
absl::Status ParseFunctionCallOutputItem(const nlohmann::json& item, const std::string& where,
                                         std::vector<ChatMessage>* out, std::string* call_id);

}  // namespace rwkvx
