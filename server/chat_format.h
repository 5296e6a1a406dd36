// The RWKV "world" chat prompt format used by /v1/chat/completions. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

struct ChatMessage {
  std::string role;     // system | developer | user | assistant
  std::string content;
};

// The RWKV world chat format: each message as "System: ...", "User: ..." or
// "Assistant: ..." separated by blank lines, ending with "Assistant:". Blank lines inside
// a message are collapsed to one newline (a blank line ends a turn). A last message from
// the assistant is continued (no new "Assistant:" turn). Errors: no messages, unknown role.
absl::StatusOr<std::string> BuildChatPrompt(const std::vector<ChatMessage>& messages);
// The stop string of the chat format.
inline constexpr const char* kChatStop = "\n\nUser:";

}  // namespace rwkvx
