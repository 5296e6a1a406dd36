// Tool calling on chat, for every frontend (HTTP's `tools` / `tool_choice`, gRPC's Chat):
// the tools into a system message and a grammar (docs/API.md, "Tool calls"):
//   none      no tools in the prompt, no grammar (as if no tools were given);
//   auto      text, or calls: <tool_call>{"name":...,"arguments":...}</tool_call>
//             (text may not begin with "<tool_call>"; once it does, the call's JSON is
//             forced to a declared function and its parameters schema);
//   required  calls to any of the tools;  named  one call to that function.
// With `parallel` (OpenAI's parallel_tool_calls; off by default here, docs/API.md) a reply
// may hold several calls, one per line, optionally ended by a blank line; without it one. The reply's text is turned back into calls
// by ToolCallReader. Pure functions and per-request objects; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/service/chat_format.h"
#include "server/service/structured_output.h"

namespace rwkvx {

// One function tool. `parameters`: its arguments' JSON schema as JSON text ("" = takes no
// arguments); key order is kept (it is the order the model is asked to write them in).
struct ToolSpec {
  std::string name;
  std::string description;
  std::string parameters;
};

struct ToolChoice {
  enum class Mode { kAuto, kNone, kRequired, kNamed };
  Mode mode = Mode::kAuto;
  std::string name;  // kNamed
};

// 1-64 characters of [A-Za-z0-9_-] (OpenAI's rule for function names).
bool ValidToolName(std::string_view name);

// Checks `tools` (names valid and distinct, each parameters schema compiles) and, with
// tools in force (some tools, mode not none), puts the tools' system message in front of
// `messages` and sets `format` to the calls' grammar. Returns whether calls may come back.
// Errors are InvalidArgument naming the field: `tools_field` + "[i]" + `function_path` +
// ".parameters: ..." (HTTP: "tools", ".function"; gRPC: "tools", "").
absl::StatusOr<bool> ApplyToolSpecs(const std::vector<ToolSpec>& tools, const ToolChoice& choice,
                                    bool parallel, std::string_view function_path,
                                    std::vector<ChatMessage>* messages, OutputFormat* format);

// A call's arguments as the model writes them in the history: compact JSON when they
// parse (a pretty-printed blank line would end the turn), else as given.
std::string CompactToolArguments(const std::string& arguments);

// Reads a reply as it streams: text, or (after "<tool_call>") calls, each one's name known
// once `{"name":"NAME","arguments":` is complete and its arguments then streaming, the
// closing `}</tool_call>` held back. Several calls are separated by "\n"; a blank line
// after them ends the reply (dropped).
class ToolCallReader {
 public:
  struct CallDelta {
    int index = 0;                     // the call's position in the reply (0, 1, ...)
    std::optional<std::string> name;   // set once per call, on its first delta
    std::string arguments;             // more of the call's arguments
  };
  struct Piece {
    std::string content;           // plain text to pass on
    std::vector<CallDelta> calls;  // in call order; a call may appear in several pieces
  };
  Piece Add(std::string_view text);
  Piece Finish();  // at the end of the reply
  // Add, and with `final` Finish too, as one piece (what a stream event needs).
  Piece Take(std::string_view text, bool final);
  bool is_call() const { return state_ != State::kUndecided && state_ != State::kText; }
  // Calls whose closing marker arrived (all of them complete when the reply stopped).
  int complete_calls() const { return complete_; }
  // Every call the reply started was closed (and there was at least one).
  bool calls_complete() const {
    return complete_ > 0 && (state_ == State::kBetween || state_ == State::kDone);
  }

 private:
  // kBetween: after a call ("\n<tool_call>" starts the next, "\n\n" ends them: kDone).
  enum class State { kUndecided, kText, kCall, kBetween, kDone };
  Piece Drain(bool at_end);
  void DrainCall(bool at_end, Piece* p);
  State state_ = State::kUndecided;
  std::string buf_;  // kUndecided/kBetween: text that may be the marker; kCall: the call's text
  size_t sent_ = 0;  // kCall: bytes of buf_ already given out (name prefix + arguments)
  bool named_ = false;
  int complete_ = 0;
  // kCall: the brace scan of the call's JSON (strings skipped), its last '}' once found.
  size_t scan_ = 0;
  int depth_ = 0;
  bool in_string_ = false, escape_ = false;
  size_t json_end_ = std::string::npos;
};

// Merges a reply's pieces into whole calls (for a non-streamed reply).
struct ToolCallText {
  std::string name;
  std::string arguments;
};
std::vector<ToolCallText> ReadToolCalls(const std::string& reply, std::string* content,
                                        bool* complete);

}  // namespace rwkvx
