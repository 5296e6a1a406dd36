// The RWKV world chat format (chat_format.h). Pure functions; any thread.
#include "server/service/chat_format.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/tokenizer.h"

namespace rwkvx {
namespace {

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

// CRLF -> LF, runs of blank lines -> one newline, trimmed.
std::string Normalize(const std::string& content) {
  std::string c;
  for (char ch : content) {
    if (ch == '\r') continue;
    if (ch == '\n' && !c.empty() && c.back() == '\n') continue;
    c.push_back(ch);
  }
  size_t b = c.find_first_not_of(" \t\n");
  size_t e = c.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : c.substr(b, e - b + 1);
}

}  // namespace

std::string RenderToolCall(const ChatToolCall& call) {
  return absl::StrCat(kToolCallOpen, "{\"name\":\"", call.name, "\",\"arguments\":", call.arguments, "}",
                      kToolCallClose);
}

std::string ChatAnswerPiece(const std::string& content) { return " " + Normalize(content); }

absl::StatusOr<std::vector<std::string>> BuildChatPieces(const std::vector<ChatMessage>& messages,
                                                         bool continuing) {
  if (messages.empty()) return Bad("'messages' must not be empty");
  std::vector<std::string> pieces;
  std::string cur;
  bool first = !continuing;
  for (const auto& m : messages) {
    const char* label = nullptr;
    if (m.role == "system" || m.role == "developer") label = "System";
    else if (m.role == "user") label = "User";
    else if (m.role == "assistant") label = "Assistant";
    else if (m.role == "tool") label = "Tool";
    else return Bad(absl::StrCat("unsupported message role '", m.role.substr(0, 50), "'"));
    if (!IsValidUtf8(m.content)) return Bad("a message is not valid UTF-8");
    if (!m.tool_calls.empty() && m.role != "assistant") return Bad("only assistant messages may carry 'tool_calls'");
    absl::StrAppend(&cur, first ? "" : "\n\n", label, ":");
    first = false;
    if (m.role == "assistant") {
      std::string answer = ChatAnswerPiece(m.content);
      for (const ChatToolCall& call : m.tool_calls) {
        if (!IsValidUtf8(call.arguments)) return Bad("tool call arguments are not valid UTF-8");
        answer += RenderToolCall(call);
      }
      pieces.push_back(std::move(cur));
      pieces.push_back(std::move(answer));
      cur.clear();
    } else {
      absl::StrAppend(&cur, " ", Normalize(m.content));
    }
  }
  // A last message from the assistant is continued (no new "Assistant:" turn).
  if (messages.back().role != "assistant") pieces.push_back(cur + "\n\nAssistant:");
  return pieces;
}

absl::StatusOr<std::string> BuildChatPrompt(const std::vector<ChatMessage>& messages) {
  auto pieces = BuildChatPieces(messages, /*continuing=*/false);
  if (!pieces.ok()) return pieces.status();
  return absl::StrJoin(*pieces, "");
}

}  // namespace rwkvx
