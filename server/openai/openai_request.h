// OpenAI-compatible request parsing: a JSON body of /v1/completions or
// /v1/chat/completions -> GenerateParams (+ the streaming options). Pure functions over
// bytes, callable from any thread; never throw. Also the libFuzzer entry point's target.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/service/service.h"

namespace rwkvx {

enum class ApiKind { kCompletion, kChat };

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  GenerateParams params;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string model;           // as the client sent it (echoed back)
  bool echo = false;           // /v1/completions: the prompt's text before the output
  bool tools = false;          // chat: the reply may be a tool call (openai_tools.h)
};

// Nesting depth of a JSON text (objects + arrays), ignoring brackets inside strings.
// Cheap pre-check before the real parser; returns InvalidArgument past `max_depth`.
absl::Status CheckJsonDepth(std::string_view body, int max_depth);

// Parses and type-checks the body (value ranges are checked later by the Service).
// Chat messages are rendered with BuildChatPrompt and kChatStop added to the stops.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                 int max_json_depth);

}  // namespace rwkvx
