// The one error-mapping table of the server: internal absl::Status code -> gRPC status
// code -> HTTP status + OpenAI error JSON. Frontends never invent their own mapping.
// Pure functions; callable from any thread.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace rwkvx {

struct ErrorMapping {
  absl::StatusCode internal;
  int grpc_code;            // numerically grpc::StatusCode
  int http_status;
  const char* openai_type;  // OpenAI error "type"
  const char* openai_code;  // OpenAI error "code" (nullptr = JSON null)
};

// The table row for `code` (unknown codes map like kInternal).
const ErrorMapping& MapStatusCode(absl::StatusCode code);

// The message a client may see: ours for client-caused errors; for server-side codes
// (Internal, Unknown, DataLoss) a fixed text, so that paths, addresses and other internal
// text never leak.
std::string ClientMessage(const absl::Status& s);

// {"error":{"message":...,"type":...,"param":null,"code":...}}
std::string OpenAiErrorJson(const absl::Status& s);
// The same body for a transport-level error the HTTP layer detects itself (413, 431, 404).
std::string OpenAiErrorJsonRaw(const std::string& message, const char* type, const char* code);

// A deep copy of `s` with its own heap rep (code, message, payloads). Every status handed
// to another thread goes through this: copies of one absl::Status share a refcounted rep
// whose release runs inside the (uninstrumented) Abseil library, so one rep fanned out to
// several threads is a reported race under ThreadSanitizer and an ownership puzzle anyway.
absl::Status Unshared(const absl::Status& s);

}  // namespace rwkvx
