// The request fields of /v1/completions and /v1/chat/completions that shape the output
// beyond sampling: response_format and grammar (structured output), logit_bias,
// min_tokens, stop_token_ids, echo (tools: openai_tools.h). Structured output and tools
// exclude each other.
// Pure functions over a parsed body, callable from any thread; never throw.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/openai/openai_request.h"

namespace rwkvx {

// Reads those fields of `body` (the parsed `text`) into `r` (type checks; ranges are the
// Service's). A JSON schema keeps its properties in the client's order (the generated
// objects follow it), so it is taken from `text` again with the keys' order kept.
absl::Status ParseOutputFields(const nlohmann::json& body, std::string_view text, OpenAiRequest* r);

}  // namespace rwkvx
