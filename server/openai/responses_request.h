// /v1/responses request parsing: a JSON body -> the generation's GenerateParams and the
// conversation turn (server/service/response_generation.h). Every field this server does
// not implement is refused with InvalidArgument naming it (never ignored). Pure functions
// over bytes, callable from any thread; never throw.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
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
};

// Parses and type-checks the body (value ranges are checked later by the Service).
absl::StatusOr<ResponsesRequest> ParseResponsesRequest(std::string_view body, int max_json_depth);

}  // namespace rwkvx
