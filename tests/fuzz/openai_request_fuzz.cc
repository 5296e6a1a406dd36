// libFuzzer target: an OpenAI JSON body (the first byte picks /v1/completions,
// /v1/chat/completions or, with bit 1 set, /v1/responses) -> ParseOpenAiRequest
// (server/openai/openai_request.cc, chat template included) -> Service::Generate's
// validation and tokenization (fuzz_service_stub.h); or ParseResponsesRequest
// (server/openai/responses_request.cc, its tools in responses_tools.cc) and the turn's
// chat pieces. Checks: errors are InvalidArgument with a message; what parses passes
// through the Service (or the chat format) without crashing and gets a clean status.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/openai/openai_request.h"
#include "server/openai/responses_request.h"
#include "server/service/chat_format.h"
#include "tests/fuzz/fuzz_service_stub.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 2) {
    std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
    auto r = rwkvx::ParseResponsesRequest(body, 64);
    if (!r.ok()) {
      if (r.status().message().empty()) std::abort();
      if (r.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
      return 0;
    }
    (void)rwkvx::BuildChatPieces(r->turn.input, (data[0] & 1) != 0);
    return 0;
  }
  auto kind = (data[0] & 1) ? rwkvx::ApiKind::kChat : rwkvx::ApiKind::kCompletion;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto r = rwkvx::ParseOpenAiRequest(kind, body, 64);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();
    if (r.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  rwkvx::GenerateOrDie(r->params);
  return 0;
}
