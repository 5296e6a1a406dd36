#include "server/chat_format.h"

#include "absl/strings/str_cat.h"
#include "engine/tokenizer.h"

namespace rwkvx {
namespace {
absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }
}  // namespace

absl::StatusOr<std::string> BuildChatPrompt(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return Bad("'messages' must not be empty");
  std::string out;
  for (const auto& m : messages) {
    const char* label = nullptr;
    if (m.role == "system" || m.role == "developer") label = "System";
    else if (m.role == "user") label = "User";
    else if (m.role == "assistant") label = "Assistant";
    else return Bad(absl::StrCat("unsupported message role '", m.role.substr(0, 50), "'"));
    if (!IsValidUtf8(m.content)) return Bad("a message is not valid UTF-8");
    // Normalise: CRLF -> LF, runs of blank lines -> one newline, trim.
    std::string c;
    for (size_t i = 0; i < m.content.size(); ++i) {
      char ch = m.content[i];
      if (ch == '\r') continue;
      if (ch == '\n' && !c.empty() && c.back() == '\n') continue;
      c.push_back(ch);
    }
    size_t b = c.find_first_not_of(" \t\n");
    size_t e = c.find_last_not_of(" \t\n");
    c = b == std::string::npos ? "" : c.substr(b, e - b + 1);
    if (!out.empty()) out += "\n\n";
    out += label;
    out += ": ";
    out += c;
  }
  if (messages.back().role == "assistant") return out;  // continue the assistant's turn
  out += "\n\nAssistant:";
  return out;
}

}  // namespace rwkvx
