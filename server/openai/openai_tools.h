// Tool calling on /v1/chat/completions: `tools`, `tool_choice` and `parallel_tool_calls`
// of a chat body read into ApplyToolSpecs (server/service/tools.h: the prompt, the grammar,
// ToolCallReader), and the tool-call fields of messages (assistant tool_calls, role tool).
// Pure functions; any thread (the HTTP connection's).
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/service/chat_format.h"
#include "server/service/service.h"
#include "server/service/tools.h"

namespace rwkvx {

// Reads `tools` / `tool_choice` / `parallel_tool_calls` of a chat body (`ordered`: the same
// body with its keys' order kept, for the parameter schemas). With tools in force it adds
// the tools' system message in front of `messages` and sets `format` to the grammar
// (GBNF). Returns whether tool calls may come back. Errors: InvalidArgument naming the
// field (a bad parameters schema too: "tools[1].function.parameters: ...").
absl::StatusOr<bool> ApplyTools(const nlohmann::json& body, const nlohmann::ordered_json& ordered,
                                std::vector<ChatMessage>* messages, OutputFormat* format);

// The tool-call fields of one message into `m`: an assistant's `tool_calls`
// ([{"id", "type": "function", "function": {"name", "arguments"}}]); `tool_call_id` of a
// tool message is accepted (the order of the messages says which call it answers).
absl::Status ParseMessageToolCalls(const nlohmann::json& message, ChatMessage* m);

}  // namespace rwkvx
