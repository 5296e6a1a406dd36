// Function tools on /v1/responses (responses_tools.h). Pure functions; any thread.
#include "server/openai/responses_tools.h"

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "server/openai/openai_json.h"
#include "server/service/tools.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using openai_json::Bad;
using openai_json::Present;

std::string Name(std::string_view key) { return std::string(key.substr(0, 64)); }

absl::Status ParseTool(const json& t, const ojson& ot, size_t i, ToolSpec* out) {
  const std::string where = absl::StrCat("tools[", i, "]");
  if (!t.is_object()) return Bad(absl::StrCat("'", where, "' must be an object"));
  const json* type = Present(t, "type");
  if (!type || !type->is_string()) return Bad(absl::StrCat("'", where, ".type' must be \"function\""));
  if (type->get<std::string>() != "function") {
    return Bad(absl::StrCat("'", where, ".type' is '", Name(type->get<std::string>()),
                            "': only \"function\" tools are supported (built-in tools such as web search, "
                            "file search or computer use are not)"));
  }
  for (const auto& [k, v] : t.items()) {
    if (v.is_null() || k == "type") continue;
    if (k == "name") {
      if (!v.is_string() || !ValidToolName(v.get<std::string>())) {
        return Bad(absl::StrCat("'", where, ".name' must be 1-64 characters of [A-Za-z0-9_-]"));
      }
      out->name = v.get<std::string>();
    } else if (k == "description") {
      if (!v.is_string()) return Bad(absl::StrCat("'", where, ".description' must be a string"));
      out->description = v.get<std::string>();
    } else if (k == "parameters") {
      if (!v.is_object()) return Bad(absl::StrCat("'", where, ".parameters' must be a JSON schema object"));
      out->parameters = ot["parameters"].dump();
    } else if (k == "strict") {
      if (!v.is_boolean()) return Bad(absl::StrCat("'", where, ".strict' must be a boolean"));
      // Calls always follow the schema here (the grammar), strict or not.
    } else if (k == "function") {
      return Bad(absl::StrCat("'", where, ".function': /v1/responses takes the function's fields flat "
                              "({\"type\": \"function\", \"name\": ..., \"parameters\": ...}), not nested as on "
                              "/v1/chat/completions"));
    } else {
      return Bad(absl::StrCat("'", where, ".", Name(k), "' is not supported"));
    }
  }
  if (out->name.empty()) return Bad(absl::StrCat("'", where, ".name' is required"));
  return absl::OkStatus();
}

absl::StatusOr<ToolChoice> ParseChoice(const json& c) {
  ToolChoice tc;
  if (c.is_string()) {
    const std::string mode = c.get<std::string>();
    if (mode == "none") tc.mode = ToolChoice::Mode::kNone;
    else if (mode == "auto") tc.mode = ToolChoice::Mode::kAuto;
    else if (mode == "required") tc.mode = ToolChoice::Mode::kRequired;
    else return Bad("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": ...}");
    return tc;
  }
  if (!c.is_object()) return Bad("'tool_choice' must be a string or an object");
  const json* type = Present(c, "type");
  if (!type || !type->is_string() || type->get<std::string>() != "function") {
    return Bad("'tool_choice.type' must be \"function\" (built-in tools and allowed_tools are not supported)");
  }
  for (const auto& [k, v] : c.items()) {
    if (k != "type" && k != "name") return Bad(absl::StrCat("'tool_choice.", Name(k), "' is not supported"));
  }
  const json* name = Present(c, "name");
  if (!name || !name->is_string()) return Bad("'tool_choice.name' must be a string");
  tc.mode = ToolChoice::Mode::kNamed;
  tc.name = name->get<std::string>();
  return tc;
}

absl::StatusOr<std::string> CallId(const json& item, const std::string& where) {
  const json* id = Present(item, "call_id");
  if (!id || !id->is_string() || id->get<std::string>().empty()) {
    return Bad(absl::StrCat("'", where, ".call_id' must be a non-empty string"));
  }
  return id->get<std::string>();
}

}  // namespace

absl::StatusOr<ResponsesTools> ApplyResponsesTools(const json& body, std::string_view text,
                                                   std::vector<ChatMessage>* messages, OutputFormat* format) {
  ResponsesTools out;
  const json* tools = Present(body, "tools");
  const json* choice = Present(body, "tool_choice");
  if (const json* p = Present(body, "parallel_tool_calls")) {
    if (!p->is_boolean()) return Bad("'parallel_tool_calls' must be a boolean");
    out.parallel = p->get<bool>();
  }
  if (tools && !tools->is_array()) return Bad("'tools' must be an array");
  const ojson ordered = ojson::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  std::vector<ToolSpec> specs(tools ? tools->size() : 0);
  for (size_t i = 0; i < specs.size(); ++i) {
    RWKVX_RETURN_IF_ERROR(ParseTool((*tools)[i], ordered["tools"][i], i, &specs[i]));
  }
  ToolChoice tc;  // auto unless given
  if (choice) {
    auto c = ParseChoice(*choice);
    if (!c.ok()) return c.status();
    tc = *c;
    if (tc.mode != ToolChoice::Mode::kNone && tc.mode != ToolChoice::Mode::kAuto && specs.empty()) {
      return Bad("'tool_choice' needs 'tools'");
    }
    out.choice_json = ordered["tool_choice"].dump();
  } else if (!specs.empty()) {
    out.choice_json = R"("auto")";
  }
  if (tools) out.tools_json = ordered["tools"].dump();
  const bool in_force = !specs.empty() && tc.mode != ToolChoice::Mode::kNone;
  if (in_force && format->kind != OutputFormat::Kind::kText) {
    return Bad("'text.format' cannot be combined with 'tools' (unless 'tool_choice' is \"none\")");
  }
  auto calls = ApplyToolSpecs(specs, tc, out.parallel, "", messages, format);
  if (!calls.ok()) return calls.status();
  out.calls = *calls;
  return out;
}

absl::Status ParseFunctionCallItem(const json& item, const std::string& where, std::vector<ChatMessage>* out,
                                   std::string* call_id) {
  ChatToolCall call;
  bool has_name = false, has_args = false;
  for (const auto& [k, v] : item.items()) {
    if (v.is_null() || k == "type" || k == "id" || k == "status" || k == "call_id") continue;
    if (k == "name") {
      if (!v.is_string() || !ValidToolName(v.get<std::string>())) {
        return Bad(absl::StrCat("'", where, ".name' must be 1-64 characters of [A-Za-z0-9_-]"));
      }
      call.name = v.get<std::string>();
      has_name = true;
    } else if (k == "arguments") {
      if (!v.is_string()) return Bad(absl::StrCat("'", where, ".arguments' must be a string (JSON text)"));
      call.arguments = CompactToolArguments(v.get<std::string>());
      has_args = true;
    } else {
      return Bad(absl::StrCat("the input item field '", Name(k), "' in '", where, "' is not supported"));
    }
  }
  auto id = CallId(item, where);
  if (!id.ok()) return id.status();
  *call_id = *id;
  if (!has_name) return Bad(absl::StrCat("'", where, "' needs a 'name'"));
  if (!has_args) return Bad(absl::StrCat("'", where, "' needs 'arguments'"));
  // The model's turn: calls that follow an assistant message belong to it.
  if (out->empty() || out->back().role != "assistant") out->push_back(ChatMessage{"assistant", "", {}});
  out->back().tool_calls.push_back(std::move(call));
  return absl::OkStatus();
}

absl::Status ParseFunctionCallOutputItem(const json& item, const std::string& where, std::vector<ChatMessage>* out,
                                         std::string* call_id) {
  ChatMessage m{"tool", "", {}};
  bool has_output = false;
  for (const auto& [k, v] : item.items()) {
    if (v.is_null() || k == "type" || k == "id" || k == "status" || k == "call_id") continue;
    if (k != "output") {
      return Bad(absl::StrCat("the input item field '", Name(k), "' in '", where, "' is not supported"));
    }
    has_output = true;
    if (v.is_string()) {
      m.content = v.get<std::string>();
      continue;
    }
    if (!v.is_array()) return Bad(absl::StrCat("'", where, ".output' must be a string or an array of input_text parts"));
    for (const json& part : v) {
      const json* type = part.is_object() ? Present(part, "type") : nullptr;
      const json* t = part.is_object() ? Present(part, "text") : nullptr;
      if (!type || *type != "input_text" || !t || !t->is_string()) {
        return Bad(absl::StrCat("'", where, ".output' parts must be {\"type\": \"input_text\", \"text\": ...} "
                                "(images and files are not supported)"));
      }
      m.content += t->get<std::string>();
    }
  }
  auto id = CallId(item, where);
  if (!id.ok()) return id.status();
  *call_id = *id;
  if (!has_output) return Bad(absl::StrCat("'", where, "' needs an 'output'"));
  out->push_back(std::move(m));
  return absl::OkStatus();
}

}  // namespace rwkvx
