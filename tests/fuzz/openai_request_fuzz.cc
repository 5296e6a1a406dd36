// libFuzzer target: an OpenAI JSON body (the first byte picks /v1/completions or
// /v1/chat/completions) -> ParseOpenAiRequest (server/openai/openai_request.cc, chat template
// included) -> Service::Generate's validation and tokenization (fuzz_service_stub.h).
// Checks: errors are InvalidArgument with a message; what parses passes through the
// Service without crashing and gets a clean status.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/openai/openai_request.h"
#include "tests/fuzz/fuzz_service_stub.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
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
