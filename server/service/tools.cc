// Tool calling: tools -> system message + grammar (GBNF built around the JSON schema of
// the calls), and ToolCallReader. Any thread (the frontend's).
#include "server/service/tools.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/json_schema.h"
#include "nlohmann/json.hpp"

namespace rwkvx {
namespace {

using ojson = nlohmann::ordered_json;

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

struct Tool {
  std::string name, description;
  ojson parameters;
};

// Local $refs of tool i's parameters point into its own document; once the parameters
// sit at #/$defs/tool-i of the call schema they must point there.
void RebaseRefs(ojson* j, const std::string& base) {
  if (j->is_object()) {
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (it.key() == "$ref" && it.value().is_string()) {
        std::string ref = it.value().get<std::string>();
        if (!ref.empty() && ref[0] == '#') it.value() = base + ref.substr(1);
      } else {
        RebaseRefs(&it.value(), base);
      }
    }
  } else if (j->is_array()) {
    for (auto& v : *j) RebaseRefs(&v, base);
  }
}

// The JSON schema of one call to any of `tools`: {"name": const, "arguments": parameters}.
ojson CallSchema(const std::vector<Tool>& tools) {
  ojson defs = ojson::object(), branches = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string key = absl::StrCat("tool-", i);
    ojson params = tools[i].parameters;
    RebaseRefs(&params, "#/$defs/" + key);
    defs[key] = std::move(params);
    ojson call = ojson::object();
    call["type"] = "object";
    call["properties"]["name"]["const"] = tools[i].name;
    call["properties"]["arguments"]["$ref"] = "#/$defs/" + key;
    call["required"] = ojson::array({"name", "arguments"});
    branches.push_back(std::move(call));
  }
  ojson schema = branches.size() == 1 ? branches[0] : ojson{{"anyOf", branches}};
  schema["$defs"] = std::move(defs);
  return schema;
}

// GBNF text that matches every string not starting with `marker` (the empty one too).
std::string NotStartingWith(const std::string& marker) {
  std::string body;
  for (size_t k = marker.size(); k-- > 0;) {
    const std::string c(1, marker[k]);
    std::string alt = absl::StrCat("\"\" | [^", c, "] tool-any");
    if (!body.empty()) absl::StrAppend(&alt, " | \"", c, "\" (", body, ")");
    body = std::move(alt);
  }
  return absl::StrCat("tool-text ::= ", body, "\ntool-any ::= .*\n");
}

absl::StatusOr<std::string> ToolsGrammar(const std::vector<Tool>& tools, bool allow_text, bool several) {
  auto gbnf = grammar::JsonSchemaToGbnf(CallSchema(tools).dump());
  if (!gbnf.ok()) return Bad(absl::StrCat("tools: ", gbnf.status().message()));
  // The schema's grammar starts with its root rule; it becomes the call's rule.
  std::string text = *gbnf;
  if (text.rfind("root ::= ", 0) != 0) return absl::InternalError("unexpected schema grammar");
  text.replace(0, 4, "tool-call-json");
  std::string root = absl::StrCat("root ::= tool-calls");
  if (allow_text) absl::StrAppend(&root, " | tool-text\n", NotStartingWith(kToolCallOpen));
  absl::StrAppend(&root, "\ntool-call ::= \"", kToolCallOpen, "\" tool-call-json \"", kToolCallClose, "\"\n");
  // Several calls: one per line, and a blank line may end them (where a chat model ends
  // its turn: "\n\nUser:"), or the end of text.
  absl::StrAppend(&root, "tool-calls ::= tool-call", several ? " (\"\\n\" tool-call)* (\"\\n\\n\")?" : "", "\n");
  return absl::StrCat(root, text);
}

std::string ToolsSystemText(const std::vector<Tool>& tools, bool required, bool several) {
  std::string s = "You can call these tools:";
  for (const Tool& t : tools) {
    absl::StrAppend(&s, "\n- ", t.name, t.description.empty() ? "" : ": ", t.description,
                    " Arguments (JSON schema): ", t.parameters.dump());
  }
  absl::StrAppend(&s, "\nTo call a tool, reply with ", kToolCallOpen, "{\"name\":\"TOOL NAME\",\"arguments\":{...}}",
                  kToolCallClose, several ? " (several calls: one per line)" : "",
                  required ? "." : " and nothing else; otherwise reply in plain text.");
  return s;
}

}  // namespace

bool ValidToolName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

absl::StatusOr<bool> ApplyToolSpecs(const std::vector<ToolSpec>& specs, const ToolChoice& choice, bool parallel,
                                    std::string_view function_path, std::vector<ChatMessage>* messages,
                                    OutputFormat* format) {
  using Mode = ToolChoice::Mode;
  if (choice.mode != Mode::kNone && choice.mode != Mode::kAuto && specs.empty()) {
    return Bad("'tool_choice' needs 'tools'");
  }
  std::vector<Tool> parsed(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string where = absl::StrCat("tools[", i, "]", std::string(function_path));
    if (!ValidToolName(specs[i].name)) return Bad(where + ".name must be 1-64 characters of [A-Za-z0-9_-]");
    for (size_t k = 0; k < i; ++k) {
      if (parsed[k].name == specs[i].name) return Bad(absl::StrCat("tools: the name '", specs[i].name, "' is used twice"));
    }
    parsed[i].name = specs[i].name;
    parsed[i].description = specs[i].description;
    if (specs[i].parameters.empty()) {
      parsed[i].parameters = ojson{{"type", "object"}, {"properties", ojson::object()}};  // no arguments: {}
    } else {
      parsed[i].parameters = ojson::parse(specs[i].parameters, nullptr, /*allow_exceptions=*/false);
      if (parsed[i].parameters.is_discarded() || !parsed[i].parameters.is_object()) {
        return Bad(where + ".parameters must be a JSON schema object");
      }
    }
    // Each schema on its own first, so that an error names its tool.
    if (auto g = grammar::JsonSchemaToGbnf(parsed[i].parameters.dump()); !g.ok()) {
      return Bad(absl::StrCat(where, ".parameters: ", g.status().message()));
    }
  }
  if (specs.empty() || choice.mode == Mode::kNone) return false;
  std::vector<Tool> callable = parsed;
  if (choice.mode == Mode::kNamed) {
    callable.clear();
    for (const Tool& t : parsed)
      if (t.name == choice.name) callable.push_back(t);
    if (callable.empty()) {
      return Bad(absl::StrCat("'tool_choice' names '", choice.name.substr(0, 64), "', which is not in 'tools'"));
    }
  }
  const bool several = parallel && choice.mode != Mode::kNamed;
  auto g = ToolsGrammar(callable, /*allow_text=*/choice.mode == Mode::kAuto, several);
  if (!g.ok()) return g.status();
  format->kind = OutputFormat::Kind::kGrammar;
  format->text = std::move(*g);
  format->where = "tools";
  messages->insert(messages->begin(),
                   ChatMessage{"system", ToolsSystemText(parsed, choice.mode != Mode::kAuto, several), {}});
  return true;
}

std::string CompactToolArguments(const std::string& arguments) {
  ojson parsed = ojson::parse(arguments, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return arguments;
  return parsed.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

ToolCallReader::Piece ToolCallReader::Add(std::string_view text) {
  buf_.append(text);
  return Drain(false);
}

ToolCallReader::Piece ToolCallReader::Finish() { return Drain(true); }

ToolCallReader::Piece ToolCallReader::Take(std::string_view text, bool final) {
  Piece p = Add(text);
  if (!final) return p;
  Piece rest = Finish();
  p.content += rest.content;
  for (auto& d : rest.calls) p.calls.push_back(std::move(d));
  return p;
}

namespace {
// `marker` decided against the start of `buf`: 1 = it starts with the whole marker, 0 =
// it cannot (a different byte), -1 = undecided (a proper prefix of the marker).
int MarkerAt(const std::string& buf, std::string_view marker) {
  const size_t n = std::min(buf.size(), marker.size());
  if (buf.compare(0, n, marker.substr(0, n)) != 0) return 0;
  return buf.size() >= marker.size() ? 1 : -1;
}
}  // namespace

ToolCallReader::Piece ToolCallReader::Drain(bool at_end) {
  Piece p;
  const std::string open = kToolCallOpen;
  const std::string next = absl::StrCat("\n", kToolCallOpen);
  for (;;) {
    switch (state_) {
      case State::kDone:
        buf_.clear();
        return p;
      case State::kUndecided:
      case State::kBetween: {
        if (state_ == State::kBetween && buf_.empty()) return p;
        const std::string& marker = state_ == State::kUndecided ? open : next;
        int m = MarkerAt(buf_, marker);
        if (state_ == State::kBetween && m != 1) {
          // A blank line after the calls ends them (the grammar allows nothing after it).
          const int end = MarkerAt(buf_, "\n\n");
          if (end == 1) {
            state_ = State::kDone;
            break;
          }
          if (end == -1) m = -1;
        }
        if (m == 1) {
          buf_.erase(0, marker.size());
          state_ = State::kCall;
          named_ = false;
          sent_ = scan_ = 0;
          depth_ = 0;
          in_string_ = escape_ = false;
          json_end_ = std::string::npos;
        } else if (m == 0 || at_end) {
          state_ = State::kText;
        } else {
          return p;
        }
        break;
      }
      case State::kText:
        p.content += buf_;
        buf_.clear();
        return p;
      case State::kCall:
        DrainCall(at_end, &p);
        if (state_ == State::kCall) return p;
        break;
    }
  }
}

// buf_ holds the current call from its '{'. The call's JSON ends where its braces balance
// (strings skipped); everything between `"arguments":` and that last '}' is arguments.
void ToolCallReader::DrainCall(bool at_end, Piece* p) {
  static constexpr std::string_view kNameKey = "{\"name\":\"";
  static constexpr std::string_view kArgsKey = "\",\"arguments\":";
  CallDelta d;
  d.index = complete_;
  if (!named_) {
    if (buf_.size() < kNameKey.size()) return;
    const size_t end = buf_.find('"', kNameKey.size());
    if (end == std::string::npos || buf_.size() < end + kArgsKey.size()) return;
    d.name = buf_.substr(kNameKey.size(), end - kNameKey.size());
    named_ = true;
    sent_ = end + kArgsKey.size();
  }
  for (; json_end_ == std::string::npos && scan_ < buf_.size(); ++scan_) {
    const char c = buf_[scan_];
    if (in_string_) {
      if (escape_) {
        escape_ = false;
      } else if (c == '\\') {
        escape_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
    } else if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if ((c == '}' || c == ']') && --depth_ == 0) {
      json_end_ = scan_;
    }
  }
  const size_t args_end = json_end_ == std::string::npos ? scan_ : json_end_;
  if (args_end > sent_) {
    d.arguments = buf_.substr(sent_, args_end - sent_);
    sent_ = args_end;
  }
  if (d.name || !d.arguments.empty()) p->calls.push_back(std::move(d));
  if (json_end_ == std::string::npos) return;
  const std::string rest = buf_.substr(json_end_ + 1);
  const int m = MarkerAt(rest, kToolCallClose);
  if (m == 1) {
    ++complete_;
    buf_ = rest.substr(std::string_view(kToolCallClose).size());
    state_ = State::kBetween;
  } else if (m == 0 || at_end) {
    // Not a call after all (only without the grammar): the rest is text.
    buf_ = rest;
    state_ = State::kText;
  }
}

std::vector<ToolCallText> ReadToolCalls(const std::string& reply, std::string* content, bool* complete) {
  ToolCallReader reader;
  std::vector<ToolCallText> calls;
  ToolCallReader::Piece p = reader.Take(reply, /*final=*/true);
  *content = std::move(p.content);
  for (auto& d : p.calls) {
    if (d.index >= static_cast<int>(calls.size())) calls.resize(d.index + 1);
    if (d.name) calls[d.index].name = *d.name;
    calls[d.index].arguments += d.arguments;
  }
  *complete = reader.calls_complete();
  return calls;
}

}  // namespace rwkvx
