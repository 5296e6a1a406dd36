// /v1/responses request parsing (responses_request.h). Pure functions; any thread.
#include "server/openai/responses_request.h"

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/openai/openai_request.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

template <typename T, typename U>
absl::Status Assign(absl::StatusOr<T> v, U* out) {
  if (!v.ok()) return v.status();
  *out = std::move(*v);
  return absl::OkStatus();
}

std::string Name(std::string_view key) { return std::string(key.substr(0, 64)); }

absl::StatusOr<std::string> StringField(const json& v, const std::string& name) {
  if (!v.is_string()) return Bad(absl::StrCat("'", name, "' must be a string"));
  return v.get<std::string>();
}

// A message's content: a string, or an array of input_text / output_text parts.
absl::StatusOr<std::string> ParseContent(const json& c, size_t index) {
  if (c.is_string()) return c.get<std::string>();
  const std::string where = absl::StrCat("input[", index, "].content");
  if (!c.is_array()) return Bad(absl::StrCat("'", where, "' must be a string or an array of text parts"));
  std::string out;
  for (const auto& part : c) {
    if (!part.is_object()) return Bad(absl::StrCat("the parts of '", where, "' must be objects"));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string() ||
        (*type != "input_text" && *type != "output_text")) {
      std::string t = type != part.end() && type->is_string() ? type->get<std::string>() : "";
      return Bad(absl::StrCat("content parts of type '", Name(t), "' in '", where,
                              "' are not supported (only input_text and output_text)"));
    }
    for (const auto& [k, v] : part.items()) {
      if (k == "type") continue;
      if (k == "text") {
        if (!v.is_string()) return Bad(absl::StrCat("a part's 'text' in '", where, "' must be a string"));
        out += v.get<std::string>();
      } else if (k == "annotations" && v.is_array() && v.empty()) {
        // An empty list, as an output_text part passed back from a response carries.
      } else {
        return Bad(absl::StrCat("the content part field '", Name(k), "' in '", where,
                                "' is not supported (only 'type' and 'text')"));
      }
    }
    if (part.find("text") == part.end()) return Bad(absl::StrCat("a text part in '", where, "' has no 'text'"));
  }
  return out;
}

absl::Status ParseInputItem(const json& item, size_t index, ResponsesRequest* r) {
  std::vector<ChatMessage>* out = &r->turn.input;
  const std::string where = absl::StrCat("input[", index, "]");
  if (!item.is_object()) return Bad(absl::StrCat("'", where, "' must be a message object"));
  if (auto t = item.find("type"); t != item.end() && !(t->is_string() && *t == "message")) {
    std::string id;
    if (t->is_string() && *t == "function_call") {
      RWKVX_RETURN_IF_ERROR(ParseFunctionCallItem(item, where, out, &id));  // responses_tools.cc
      r->call_ids.push_back(std::move(id));
      return absl::OkStatus();
    }
    if (t->is_string() && *t == "function_call_output") {
      RWKVX_RETURN_IF_ERROR(ParseFunctionCallOutputItem(item, where, out, &id));
      r->output_call_ids.push_back(std::move(id));
      return absl::OkStatus();
    }
    return Bad(absl::StrCat("'", where, ".type' must be \"message\", \"function_call\" or "
                            "\"function_call_output\"; other input items (files, images, reasoning, built-in "
                            "tool calls) are not supported"));
  }
  ChatMessage m;
  bool has_role = false, has_content = false;
  for (const auto& [k, v] : item.items()) {
    if (k == "type" || v.is_null()) {
      continue;
    } else if (k == "role") {
      RWKVX_RETURN_IF_ERROR(Assign(StringField(v, where + ".role"), &m.role));
      if (m.role != "user" && m.role != "assistant" && m.role != "system" && m.role != "developer") {
        return Bad(absl::StrCat("'", where, ".role' must be user, assistant, system or developer (a tool's "
                                "result is a function_call_output item)"));
      }
      has_role = true;
    } else if (k == "content") {
      RWKVX_RETURN_IF_ERROR(Assign(ParseContent(v, index), &m.content));
      has_content = true;
    } else if (k == "id" || k == "status") {
      // An output message passed back as input carries its id and status: no meaning here.
    } else {
      return Bad(absl::StrCat("the input item field '", Name(k), "' in '", where, "' is not supported"));
    }
  }
  if (!has_role) return Bad(absl::StrCat("'", where, "' needs a 'role'"));
  if (!has_content) return Bad(absl::StrCat("'", where, "' needs a 'content'"));
  out->push_back(std::move(m));
  return absl::OkStatus();
}

absl::Status ParseInput(const json& v, ResponsesRequest* r) {
  std::vector<ChatMessage>* out = &r->turn.input;
  if (v.is_string()) {
    out->push_back({"user", v.get<std::string>()});
    return absl::OkStatus();
  }
  if (!v.is_array()) return Bad("'input' must be a string or an array of messages");
  if (v.empty()) return Bad("'input' must not be empty");
  for (size_t i = 0; i < v.size(); ++i) RWKVX_RETURN_IF_ERROR(ParseInputItem(v[i], i, r));
  if (out->back().role == "assistant" && !out->back().tool_calls.empty()) {
    return Bad("the input ends with a function_call: give its result as a function_call_output item after it");
  }
  if (out->back().role == "assistant") {
    return Bad("the last input message must not be from the assistant (continuing an answer "
               "is not supported by /v1/responses; use /v1/chat/completions)");
  }
  return absl::OkStatus();
}

absl::Status ParseMetadata(const json& v, std::map<std::string, std::string>* out) {
  if (!v.is_object()) return Bad("'metadata' must be an object of strings");
  if (v.size() > 16) return Bad("'metadata' may hold at most 16 keys");
  for (const auto& [k, val] : v.items()) {
    if (k.size() > 64) return Bad("'metadata' keys must be at most 64 characters");
    if (!val.is_string()) return Bad("'metadata' values must be strings");
    if (val.get<std::string>().size() > 512) return Bad("'metadata' values must be at most 512 characters");
    (*out)[k] = val.get<std::string>();
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> IntField(const json& v, const std::string& name) {
  if (!v.is_number_integer()) return Bad(absl::StrCat("'", name, "' must be an integer"));
  if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t{1} << 62)) {
    return Bad(absl::StrCat("'", name, "' is too large"));
  }
  return v.get<int64_t>();
}

absl::StatusOr<double> NumberField(const json& v, const std::string& name) {
  if (!v.is_number()) return Bad(absl::StrCat("'", name, "' must be a number"));
  return v.get<double>();
}

absl::StatusOr<bool> BoolField(const json& v, const std::string& name) {
  if (!v.is_boolean()) return Bad(absl::StrCat("'", name, "' must be a boolean"));
  return v.get<bool>();
}

// Fields whose given value is what this server does anyway (no truncation): accepted; any
// other value is refused.
absl::Status CheckDefaultOnly(const std::string& k, const json& v) {
  if (k == "truncation" && v.is_string() && v == "disabled") return absl::OkStatus();
  return Bad(absl::StrCat("'", k, "' is not supported by this server with that value (truncation is not "
                          "implemented: a conversation longer than the model's limits is refused)"));
}

// "text": {"format": {"type": "text"}}, {"type": "json_object"}, or {"type": "json_schema",
// "name", "schema", "strict"?, "description"?} (the Responses API puts the schema's fields
// beside its type). The schema keeps the client's key order (`body` parsed again, ordered).
absl::Status ParseTextFormat(const json& v, std::string_view body, OutputFormat* out, std::string* echo) {
  if (!v.is_object()) return Bad("'text' must be an object");
  for (const auto& [k, _] : v.items()) {
    if (k != "format") return Bad(absl::StrCat("'text.", Name(k), "' is not supported"));
  }
  auto it = v.find("format");
  if (it == v.end() || it->is_null()) return absl::OkStatus();
  const json& f = *it;
  if (!f.is_object()) return Bad("'text.format' must be an object");
  auto type = f.find("type");
  if (type == f.end() || !type->is_string()) return Bad("'text.format.type' must be a string");
  const std::string t = type->get<std::string>();
  auto only = [&](std::initializer_list<const char*> keys) -> absl::Status {
    for (const auto& [k, _] : f.items()) {
      bool known = false;
      for (const char* name : keys) known = known || k == name;
      if (!known) return Bad(absl::StrCat("'text.format.", Name(k), "' is not supported with type '", t, "'"));
    }
    return absl::OkStatus();
  };
  if (t == "text") {
    RWKVX_RETURN_IF_ERROR(only({"type"}));
  } else if (t == "json_object") {
    RWKVX_RETURN_IF_ERROR(only({"type"}));
    *out = {OutputFormat::Kind::kJsonObject, "", "text.format"};
  } else if (t == "json_schema") {
    RWKVX_RETURN_IF_ERROR(only({"type", "name", "schema", "strict", "description"}));
    if (auto n = f.find("name"); n != f.end() && !n->is_string()) return Bad("'text.format.name' must be a string");
    if (auto d = f.find("description"); d != f.end() && !d->is_string()) {
      return Bad("'text.format.description' must be a string");
    }
    if (auto s = f.find("strict"); s != f.end() && !s->is_null() && !s->is_boolean()) {
      return Bad("'text.format.strict' must be a boolean");
    }
    auto schema = f.find("schema");
    if (schema == f.end() || !schema->is_object()) return Bad("'text.format.schema' must be a JSON schema (an object)");
    auto ordered = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    *out = {OutputFormat::Kind::kJsonSchema, ordered["text"]["format"]["schema"].dump(), "text.format.schema"};
    *echo = ordered["text"]["format"].dump();
    return absl::OkStatus();
  } else {
    return Bad("'text.format.type' must be \"text\", \"json_object\" or \"json_schema\"");
  }
  *echo = f.dump();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ResponsesRequest> ParseResponsesRequest(std::string_view body, int max_json_depth) {
  RWKVX_RETURN_IF_ERROR(CheckJsonDepth(body, max_json_depth));
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("the request body is not valid JSON (or not valid UTF-8)");
  if (!j.is_object()) return Bad("the request body must be a JSON object");
  ResponsesRequest r;
  GenerateParams& p = r.params;
  bool has_input = false;
  for (const auto& [k, v] : j.items()) {
    if (v.is_null()) continue;  // null = not given
    if (k == "model") {
      RWKVX_RETURN_IF_ERROR(Assign(StringField(v, k), &p.model));
    } else if (k == "input") {
      RWKVX_RETURN_IF_ERROR(ParseInput(v, &r));
      has_input = true;
    } else if (k == "instructions") {
      RWKVX_RETURN_IF_ERROR(Assign(StringField(v, k), &r.instructions));
    } else if (k == "max_output_tokens") {
      RWKVX_RETURN_IF_ERROR(Assign(IntField(v, k), &p.max_tokens));
    } else if (k == "temperature") {
      RWKVX_RETURN_IF_ERROR(Assign(NumberField(v, k), &p.temperature));
    } else if (k == "top_p") {
      RWKVX_RETURN_IF_ERROR(Assign(NumberField(v, k), &p.top_p));
    } else if (k == "stream") {
      RWKVX_RETURN_IF_ERROR(Assign(BoolField(v, k), &r.stream));
    } else if (k == "store") {
      RWKVX_RETURN_IF_ERROR(Assign(BoolField(v, k), &r.turn.store));
    } else if (k == "previous_response_id") {
      RWKVX_RETURN_IF_ERROR(Assign(StringField(v, k), &r.turn.previous));
      if (r.turn.previous.empty()) return Bad("'previous_response_id' must not be empty");
    } else if (k == "metadata") {
      RWKVX_RETURN_IF_ERROR(ParseMetadata(v, &r.metadata));
    } else if (k == "user") {
      RWKVX_RETURN_IF_ERROR(Assign(StringField(v, k), &r.user));
    } else if (k == "text") {
      RWKVX_RETURN_IF_ERROR(ParseTextFormat(v, body, &p.output_format, &r.text_format));
    } else if (k == "tools" || k == "tool_choice" || k == "parallel_tool_calls") {
      // Read once every field is known (text.format may not be combined with tools).
    } else if (k == "truncation") {
      RWKVX_RETURN_IF_ERROR(CheckDefaultOnly(k, v));
    } else if (k == "top_logprobs") {
      int64_t n = 0;
      RWKVX_RETURN_IF_ERROR(Assign(IntField(v, k), &n));
      if (n < 0 || n > 20) return Bad("'top_logprobs' must be between 0 and 20");
      p.top_logprobs = static_cast<int>(n);
      r.logprobs = true;
    } else if (k == "include") {
      if (!v.is_array()) return Bad("'include' must be an array of strings");
      for (const auto& item : v) {
        if (item.is_string() && item == "message.output_text.logprobs") {
          r.logprobs = true;
        } else {
          return Bad(absl::StrCat("'include' value ", item.is_string() ? "'" + Name(item.get<std::string>()) + "'" : "",
                                  " is not supported (only \"message.output_text.logprobs\")"));
        }
      }
    } else {
      return Bad(absl::StrCat("'", Name(k), "' is not supported by this server's /v1/responses"));
    }
  }
  if (!has_input) return Bad("'input' is required");
  auto tools = ApplyResponsesTools(j, body, &r.turn.input, &p.output_format);  // responses_tools.cc
  if (!tools.ok()) return tools.status();
  r.tools = std::move(*tools);
  if (r.logprobs && r.tools.calls) {
    return Bad("log-probabilities ('include' message.output_text.logprobs, 'top_logprobs') are not supported "
               "with tools in force");
  }
  p.logprobs = r.logprobs;
  return r;
}

}  // namespace rwkvx
