// gRPC messages (proto) -> the frontend-neutral GenerateParams / PromptInput. Pure
// functions over the message, callable from any thread; values are checked later by the
// Service. Apart from the gRPC service so tests/fuzz/proto_request_fuzz.cc can reach it.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "rwkvx/v1/inference.pb.h"
#include "server/service/service.h"

namespace rwkvx {

// The prompt of a message with the `text` / `token_ids` oneof (GenerateRequest,
// CreateSessionRequest, AppendSessionRequest): text, ids, or neither.
template <typename Message>
PromptInput PromptFromProto(const Message& m) {
  PromptInput in;
  if (m.has_text()) in.text = m.text();
  if (m.has_token_ids()) {
    in.ids = std::vector<int64_t>(m.token_ids().ids().begin(), m.token_ids().ids().end());
  }
  return in;
}

// `deadline` is the call's deadline (time_point::max() = none); one already passed
// becomes a 1 ms timeout, so the request ends with DEADLINE_EXCEEDED, not unbounded.
GenerateParams GenerateParamsFromProto(const ::rwkvx::v1::GenerateRequest& r,
                                       std::chrono::system_clock::time_point deadline);

// A Chat request: the conversation (with the tools' system message when tools are in
// force) as the prompt text, the chat stop string, the tools' grammar. InvalidArgument
// naming the field for what the message cannot mean (an unknown tool_choice mode, a bad
// tool, tools with an output_format).
struct ChatParams {
  GenerateParams params;
  bool tools = false;  // the reply may be tool calls (read them with ToolCallReader)
};
absl::StatusOr<ChatParams> ChatParamsFromProto(const ::rwkvx::v1::ChatRequest& r,
                                               std::chrono::system_clock::time_point deadline);

}  // namespace rwkvx
