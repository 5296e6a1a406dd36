// The RWKV "world" chat prompt format used by /v1/chat/completions and /v1/responses.
// Threads: pure functions of their arguments; any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

// A function call in an assistant message (OpenAI's tool_calls): the function's name
// ([A-Za-z0-9_-]{1,64}) and its arguments as JSON text.
struct ChatToolCall {
  std::string name;
  std::string arguments;
};

struct ChatMessage {
  std::string role;     // system | developer | user | assistant | tool
  std::string content;
  std::vector<ChatToolCall> tool_calls = {};  // assistant messages only (= {}: aggregate inits may leave it out)
};

// How a tool call is written in the conversation, by the model and in the history:
//   <tool_call>{"name":"NAME","arguments":ARGUMENTS}</tool_call>
inline constexpr const char* kToolCallOpen = "<tool_call>";
inline constexpr const char* kToolCallClose = "</tool_call>";
std::string RenderToolCall(const ChatToolCall& call);

// The RWKV world chat format: each message as "System: ...", "User: ...", "Assistant: ..."
// or "Tool: ..." (a tool's result) separated by blank lines, ending with "Assistant:". An
// assistant message's tool calls follow its text, each as RenderToolCall writes it. Blank lines inside
// a message are collapsed to one newline (a blank line ends a turn). A last message from
// the assistant is continued (no new "Assistant:" turn). Errors: no messages, unknown role.
absl::StatusOr<std::string> BuildChatPrompt(const std::vector<ChatMessage>& messages);

// The same text cut into pieces that are tokenized one by one (/v1/responses): a piece
// ends after every "Assistant:" label and after every assistant message's content, which
// are the places where a conversation continued turn by turn is cut (the model's answer
// starts after "Assistant:"; the next turn starts after it). `continuing`: the messages
// follow an earlier conversation that ended with an assistant's answer, so the first one
// starts with the blank line that separates turns. Their concatenation is BuildChatPrompt's
// text (with "\n\n" in front when continuing).
absl::StatusOr<std::vector<std::string>> BuildChatPieces(const std::vector<ChatMessage>& messages,
                                                         bool continuing);
// The piece an assistant's answer `content` is in the conversation: " " + the content
// normalized as BuildChatPrompt normalizes every message.
std::string ChatAnswerPiece(const std::string& content);

// The stop string of the chat format.
inline constexpr const char* kChatStop = "\n\nUser:";

}  // namespace rwkvx
