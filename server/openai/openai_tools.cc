// Tool calling on /v1/chat/completions: the body's tools, tool_choice and
// parallel_tool_calls into ApplyToolSpecs (server/service/tools.h), and the tool-call
// fields of messages. Runs on the HTTP connection's thread.
#include "server/openai/openai_tools.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/openai/openai_json.h"
#include "engine/status_macros.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

using openai_json::Bad;
using openai_json::Present;

absl::Status ParseTool(const json& t, const ojson& ot, size_t i, ToolSpec* out) {
  const std::string where = absl::StrCat("tools[", i, "]");
  if (!t.is_object()) return Bad(where + " must be an object");
  const json* type = Present(t, "type");
  if (!type || !type->is_string() || type->get<std::string>() != "function") {
    return Bad(where + ".type must be \"function\" (other tool types are not supported)");
  }
  const json* f = Present(t, "function");
  if (!f || !f->is_object()) return Bad(where + ".function must be an object");
  const json* name = Present(*f, "name");
  if (!name || !name->is_string()) return Bad(where + ".function.name must be 1-64 characters of [A-Za-z0-9_-]");
  out->name = name->get<std::string>();
  if (const json* d = Present(*f, "description")) {
    if (!d->is_string()) return Bad(where + ".function.description must be a string");
    out->description = d->get<std::string>();
  }
  if (const json* strict = Present(*f, "strict"); strict && !strict->is_boolean()) {
    return Bad(where + ".function.strict must be a boolean");
  }
  if (Present(*f, "parameters")) {
    const ojson& params = ot["function"]["parameters"];
    if (!params.is_object()) return Bad(where + ".function.parameters must be a JSON schema object");
    out->parameters = params.dump();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> ApplyTools(const json& body, const ojson& ordered, std::vector<ChatMessage>* messages,
                                OutputFormat* format) {
  const json* tools = Present(body, "tools");
  const json* choice = Present(body, "tool_choice");
  for (const char* legacy : {"functions", "function_call"}) {
    if (Present(body, legacy)) {
      return Bad(absl::StrCat("'", legacy, "' (the legacy function calling) is not supported; use 'tools'"));
    }
  }
  bool parallel = false;  // docs/API.md: one call unless the client asks for several
  if (const json* p = Present(body, "parallel_tool_calls")) {
    if (!p->is_boolean()) return Bad("'parallel_tool_calls' must be a boolean");
    parallel = p->get<bool>();
  }
  if (tools && !tools->is_array()) return Bad("'tools' must be an array");
  ToolChoice tc;
  if (choice) {
    if (choice->is_string()) {
      const std::string mode = choice->get<std::string>();
      if (mode == "none") {
        tc.mode = ToolChoice::Mode::kNone;
      } else if (mode == "auto") {
        tc.mode = ToolChoice::Mode::kAuto;
      } else if (mode == "required") {
        tc.mode = ToolChoice::Mode::kRequired;
      } else {
        return Bad("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
      }
    } else if (choice->is_object()) {
      const json* f = Present(*choice, "function");
      const json* n = f && f->is_object() ? Present(*f, "name") : nullptr;
      if (!n || !n->is_string()) return Bad("'tool_choice.function.name' must be a string");
      tc.mode = ToolChoice::Mode::kNamed;
      tc.name = n->get<std::string>();
    } else {
      return Bad("'tool_choice' must be a string or an object");
    }
    if (tc.mode != ToolChoice::Mode::kNone && (!tools || tools->empty())) return Bad("'tool_choice' needs 'tools'");
  }
  std::vector<ToolSpec> specs(tools ? tools->size() : 0);
  for (size_t i = 0; i < specs.size(); ++i) {
    RWKVX_RETURN_IF_ERROR(ParseTool((*tools)[i], ordered["tools"][i], i, &specs[i]));
  }
  return ApplyToolSpecs(specs, tc, parallel, ".function", messages, format);
}

absl::Status ParseMessageToolCalls(const json& m, ChatMessage* cm) {
  const json* calls = Present(m, "tool_calls");
  if (!calls) return absl::OkStatus();
  if (!calls->is_array()) return Bad("a message's 'tool_calls' must be an array");
  for (const json& c : *calls) {
    const json* f = c.is_object() ? Present(c, "function") : nullptr;
    const json* name = f && f->is_object() ? Present(*f, "name") : nullptr;
    const json* args = f && f->is_object() ? Present(*f, "arguments") : nullptr;
    if (!name || !name->is_string() || !ValidToolName(name->get<std::string>())) {
      return Bad("each message tool call needs 'function.name' (1-64 characters of [A-Za-z0-9_-])");
    }
    if (args && !args->is_string()) return Bad("a message tool call's 'function.arguments' must be a string");
    ChatToolCall call{name->get<std::string>(), CompactToolArguments(args ? args->get<std::string>() : "{}")};
    cm->tool_calls.push_back(std::move(call));
  }
  return absl::OkStatus();
}

}  // namespace rwkvx
