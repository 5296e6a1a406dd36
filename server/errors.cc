#include "server/errors.h"

#include "absl/strings/cord.h"
#include "nlohmann/json.hpp"

namespace rwkvx {
namespace {

// clang-format off
const ErrorMapping kTable[] = {
  {absl::StatusCode::kOk,                  0, 200, "",                      nullptr},
  {absl::StatusCode::kCancelled,           1, 499, "cancelled",             "cancelled"},
  {absl::StatusCode::kUnknown,             2, 500, "server_error",          "internal_error"},
  {absl::StatusCode::kInvalidArgument,     3, 400, "invalid_request_error", "invalid_value"},
  {absl::StatusCode::kDeadlineExceeded,    4, 504, "timeout_error",         "timeout"},
  {absl::StatusCode::kNotFound,            5, 404, "invalid_request_error", "not_found"},
  {absl::StatusCode::kAlreadyExists,       6, 409, "invalid_request_error", "already_exists"},
  {absl::StatusCode::kPermissionDenied,    7, 403, "permission_error",      "permission_denied"},
  {absl::StatusCode::kResourceExhausted,   8, 429, "rate_limit_error",      "rate_limit_exceeded"},
  {absl::StatusCode::kFailedPrecondition,  9, 409, "invalid_request_error", "failed_precondition"},
  {absl::StatusCode::kAborted,            10, 409, "server_error",          "aborted"},
  {absl::StatusCode::kOutOfRange,         11, 400, "invalid_request_error", "out_of_range"},
  {absl::StatusCode::kUnimplemented,      12, 501, "invalid_request_error", "unimplemented"},
  {absl::StatusCode::kInternal,           13, 500, "server_error",          "internal_error"},
  {absl::StatusCode::kUnavailable,        14, 503, "server_error",          "unavailable"},
  {absl::StatusCode::kDataLoss,           15, 500, "server_error",          "internal_error"},
  {absl::StatusCode::kUnauthenticated,    16, 401, "authentication_error",  "invalid_api_key"},
};
// clang-format on

bool IsServerSide(absl::StatusCode c) {
  return c == absl::StatusCode::kInternal || c == absl::StatusCode::kUnknown ||
         c == absl::StatusCode::kDataLoss;
}

}  // namespace

const ErrorMapping& MapStatusCode(absl::StatusCode code) {
  for (const auto& row : kTable) {
    if (row.internal == code) return row;
  }
  return kTable[static_cast<int>(absl::StatusCode::kInternal)];
}

std::string ClientMessage(const absl::Status& s) {
  if (IsServerSide(s.code())) return "internal server error";
  return std::string(s.message());
}

std::string OpenAiErrorJsonRaw(const std::string& message, const char* type, const char* code) {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}};
  e["code"] = code ? nlohmann::json(code) : nlohmann::json(nullptr);
  nlohmann::json body = {{"error", e}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string OpenAiErrorJson(const absl::Status& s) {
  const ErrorMapping& m = MapStatusCode(s.code());
  return OpenAiErrorJsonRaw(ClientMessage(s), m.openai_type, m.openai_code);
}

absl::Status Unshared(const absl::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status out(s.code(), std::string(s.message()));
  s.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, absl::Cord(std::string(payload)));
  });
  return out;
}

}  // namespace rwkvx
