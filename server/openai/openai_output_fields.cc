// ParseOutputFields: response_format / grammar, logit_bias, min_tokens, stop_token_ids,
// echo (tools: openai_tools.cc). Runs on the HTTP connection's thread.
#include "server/openai/openai_output_fields.h"

#include <charconv>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/openai/openai_json.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

using openai_json::Bad;
using openai_json::Present;

// The schema's JSON text with its object keys in the order the client wrote them.
std::string OrderedSchemaText(std::string_view body) {
  auto j = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  return j["response_format"]["json_schema"]["schema"].dump();
}

absl::Status ParseResponseFormat(const json& rf, std::string_view body, OutputFormat* out) {
  if (!rf.is_object()) return Bad("'response_format' must be an object");
  const json* type = Present(rf, "type");
  if (!type || !type->is_string()) return Bad("'response_format.type' must be a string");
  const std::string t = type->get<std::string>();
  if (t == "text") return absl::OkStatus();
  if (t == "json_object") {
    out->kind = OutputFormat::Kind::kJsonObject;
    out->where = "response_format";
    return absl::OkStatus();
  }
  if (t != "json_schema") {
    return Bad(absl::StrCat("'response_format.type' must be \"text\", \"json_object\" or "
                            "\"json_schema\", not \"", t.substr(0, 50), "\""));
  }
  const json* js = Present(rf, "json_schema");
  if (!js || !js->is_object()) return Bad("'response_format.json_schema' must be an object");
  if (const json* name = Present(*js, "name"); name && !name->is_string()) {
    return Bad("'response_format.json_schema.name' must be a string");
  }
  if (const json* strict = Present(*js, "strict"); strict && !strict->is_boolean()) {
    return Bad("'response_format.json_schema.strict' must be a boolean");
  }
  const json* schema = Present(*js, "schema");
  if (!schema) return Bad("'response_format.json_schema.schema' is required");
  if (!schema->is_object() && !schema->is_boolean()) {
    return Bad("'response_format.json_schema.schema' must be a JSON schema (an object)");
  }
  out->kind = OutputFormat::Kind::kJsonSchema;
  out->text = OrderedSchemaText(body);
  out->where = "response_format.json_schema.schema";
  return absl::OkStatus();
}

// A regular expression matching exactly the literal text `s`.
std::string RegexLiteral(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}/").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// guided_json (a schema object, or its JSON text), guided_regex (the whole output matches),
// guided_choice (one of the strings, exactly), guided_grammar (GBNF).
absl::Status ParseGuided(const std::string& name, const json& v, std::string_view body, OutputFormat* out) {
  out->where = name;
  if (name == "guided_json") {
    if (v.is_string()) {
      out->text = v.get<std::string>();
    } else if (v.is_object() || v.is_boolean()) {
      auto ordered = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
      out->text = ordered["guided_json"].dump();
    } else {
      return Bad("'guided_json' must be a JSON schema (an object, or its JSON text)");
    }
    out->kind = OutputFormat::Kind::kJsonSchema;
    return absl::OkStatus();
  }
  if (name == "guided_regex" || name == "guided_grammar") {
    if (!v.is_string()) return Bad(absl::StrCat("'", name, "' must be a string"));
    out->kind = name == "guided_regex" ? OutputFormat::Kind::kRegex : OutputFormat::Kind::kGrammar;
    out->text = v.get<std::string>();
    return absl::OkStatus();
  }
  if (!v.is_array() || v.empty()) return Bad("'guided_choice' must be a non-empty array of strings");
  std::string re;
  for (const json& c : v) {
    if (!c.is_string()) return Bad("'guided_choice' must be a non-empty array of strings");
    absl::StrAppend(&re, re.empty() ? "" : "|", "(?:", RegexLiteral(c.get<std::string>()), ")");
  }
  out->kind = OutputFormat::Kind::kRegex;
  out->text = std::move(re);
  return absl::OkStatus();
}

absl::Status ParseLogitBias(const json& lb, GenerateParams* p) {
  if (!lb.is_object()) return Bad("'logit_bias' must be an object mapping token ids to biases");
  for (auto it = lb.begin(); it != lb.end(); ++it) {
    const std::string& key = it.key();
    int64_t id = 0;
    auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || key.empty()) {
      return Bad(absl::StrCat("'logit_bias' keys must be token ids (integers), not '",
                              key.substr(0, 50), "'"));
    }
    if (!it.value().is_number()) {
      return Bad(absl::StrCat("'logit_bias' values must be numbers (token ", id, ")"));
    }
    p->logit_bias.emplace_back(id, it.value().get<double>());
  }
  return absl::OkStatus();
}

absl::Status ParseStopTokenIds(const json& a, GenerateParams* p) {
  if (!a.is_array()) return Bad("'stop_token_ids' must be an array of token ids");
  for (const auto& t : a) {
    if (!t.is_number_integer() || (t.is_number_unsigned() && t.get<uint64_t>() > (1ull << 40))) {
      return Bad("'stop_token_ids' must be an array of token ids");
    }
    p->stop_token_ids.push_back(t.get<int64_t>());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseOutputFields(const json& j, std::string_view text, OpenAiRequest* r) {
  GenerateParams& p = r->params;
  if (r->kind == ApiKind::kCompletion) {
    for (const char* chat_only : {"tools", "tool_choice", "functions", "function_call"}) {
      if (Present(j, chat_only)) return Bad(absl::StrCat("'", chat_only, "' is only supported on /v1/chat/completions"));
    }
  }
  const bool tools = p.output_format.kind != OutputFormat::Kind::kText;  // set by ApplyTools
  if (const json* rf = Present(j, "response_format")) {
    OutputFormat f;
    if (auto s = ParseResponseFormat(*rf, text, &f); !s.ok()) return s;
    if (tools && f.kind != OutputFormat::Kind::kText) {
      return Bad("'response_format' cannot be combined with 'tools' (unless 'tool_choice' is \"none\")");
    }
    if (!tools) p.output_format = std::move(f);
  }
  if (const json* g = Present(j, "grammar")) {
    if (!g->is_string()) return Bad("'grammar' must be a string (GBNF)");
    if (tools) return Bad("'grammar' cannot be combined with 'tools' (unless 'tool_choice' is \"none\")");
    if (p.output_format.kind != OutputFormat::Kind::kText) {
      return Bad("give 'grammar' or a JSON 'response_format', not both");
    }
    p.output_format.kind = OutputFormat::Kind::kGrammar;
    p.output_format.text = g->get<std::string>();
    p.output_format.where = "grammar";
  }
  // vLLM's guided decoding fields: the same output formats under its names (one at most).
  for (const char* vllm : {"guided_json", "guided_regex", "guided_choice", "guided_grammar"}) {
    const json* g = Present(j, vllm);
    if (!g) continue;
    if (tools) return Bad(absl::StrCat("'", vllm, "' cannot be combined with 'tools' (unless 'tool_choice' is \"none\")"));
    if (p.output_format.kind != OutputFormat::Kind::kText) {
      return Bad(absl::StrCat("give one of 'response_format', 'grammar' and the guided_* fields, not '", vllm,
                              "' beside another"));
    }
    if (auto s = ParseGuided(vllm, *g, text, &p.output_format); !s.ok()) return s;
  }
  if (const json* gw = Present(j, "guided_whitespace_pattern")) {
    (void)gw;
    return Bad("'guided_whitespace_pattern' is not supported (JSON output here is always compact)");
  }
  if (const json* lb = Present(j, "logit_bias")) {
    if (auto s = ParseLogitBias(*lb, &p); !s.ok()) return s;
  }
  if (const json* mt = Present(j, "min_tokens")) {
    if (!mt->is_number_integer()) return Bad("'min_tokens' must be an integer");
    p.min_tokens = mt->is_number_unsigned() && mt->get<uint64_t>() > (1ull << 40)
                       ? int64_t{1} << 40 : mt->get<int64_t>();
  }
  if (const json* st = Present(j, "stop_token_ids")) {
    if (auto s = ParseStopTokenIds(*st, &p); !s.ok()) return s;
  }
  if (const json* echo = Present(j, "echo")) {
    if (!echo->is_boolean()) return Bad("'echo' must be a boolean");
    r->echo = echo->get<bool>();
    if (r->echo && r->kind != ApiKind::kCompletion) return Bad("'echo' is only supported on /v1/completions");
    if (r->echo && p.logprobs) {
      return Bad("'echo' with 'logprobs' is not supported (the prompt tokens' log-probabilities are not computed)");
    }
  }
  return absl::OkStatus();
}

}  // namespace rwkvx
