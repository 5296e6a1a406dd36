// JSON schema -> GBNF (json_schema.h): keyword checks, combinators ($ref, anyOf/oneOf,
// allOf of one schema, enum, const), type dispatch and the shared primitive rules.
#include "engine/sampling/grammar/json_schema.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/json_depth.h"
#include "engine/sampling/grammar/json_schema_compiler.h"

namespace rwkvx::grammar {
namespace {

const std::set<std::string>& Ignored() {
  static const std::set<std::string> k = {"title", "description", "examples", "default", "$schema", "$id",
                                          "id", "$comment", "deprecated", "readOnly", "writeOnly", "format",
                                          "$defs", "definitions"};
  return k;
}
const std::set<std::string>& Supported() {
  static const std::set<std::string> k = {
      "type", "properties", "required", "additionalProperties", "items", "prefixItems", "additionalItems",
      "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
      "exclusiveMaximum", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "uniqueItems", "pattern"};
  return k;
}

// The constraint keywords of `s` (everything not ignored), for "X next to Y" errors.
std::vector<std::string> Constraints(const OrderedJson& s) {
  std::vector<std::string> out;
  for (const auto& [k, v] : s.items()) {
    if (!Ignored().count(k)) out.push_back(k);
  }
  return out;
}

bool MatchesType(const OrderedJson& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") {
    return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  }
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  return false;
}

struct PrimitiveRule {
  const char* name;
  const char* body;
  std::vector<const char*> deps;
};

const std::vector<PrimitiveRule>& Primitives() {
  static const std::vector<PrimitiveRule> k = {
      {"json-value", "json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"",
       {"json-object", "json-array", "json-string", "json-number"}},
      {"json-object", "\"{\" ( json-string \":\" json-value ( \",\" json-string \":\" json-value )* )? \"}\"",
       {"json-string", "json-value"}},
      {"json-array", "\"[\" ( json-value ( \",\" json-value )* )? \"]\"", {"json-value"}},
      {"json-string", "\"\\\"\" ( [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* \"\\\"\"", {}},
      {"json-number", "\"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?", {}},
      {"json-integer", "\"-\"? ( \"0\" | [1-9] [0-9]* )", {}},
  };
  return k;
}

std::string SanitizeName(const std::string& hint) {
  std::string out;
  for (char c : hint) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    out.push_back(ok ? c : '-');
  }
  if (out.size() > 40) out.resize(40);
  return out.empty() ? "r" : out;
}

// RFC 6901 pointer segment: ~1 is '/', ~0 is '~'; URI fragments also percent-encode.
std::string UnescapeSegment(const std::string& s) {
  std::string pct;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1; };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      pct.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      pct.push_back(s[i]);
    }
  }
  std::string out;
  for (size_t i = 0; i < pct.size(); ++i) {
    if (pct[i] == '~' && i + 1 < pct.size() && (pct[i + 1] == '0' || pct[i + 1] == '1')) {
      out.push_back(pct[i + 1] == '0' ? '~' : '/');
      ++i;
    } else {
      out.push_back(pct[i]);
    }
  }
  return out;
}

}  // namespace

absl::Status SchemaCompiler::Error(const std::string& path, const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat("json schema: at ", path, ": ", what));
}

std::string SchemaCompiler::AddRule(const std::string& hint, const std::string& body) {
  auto it = by_body_.find(body);
  if (it != by_body_.end()) return it->second;
  std::string name = SanitizeName(hint);
  for (int i = 2; names_.count(name); ++i) name = absl::StrCat(SanitizeName(hint), "-", i);
  names_.insert(name);
  rules_.emplace_back(name, body);
  by_body_.emplace(body, name);
  return name;
}

std::string SchemaCompiler::Primitive(const std::string& name) {
  if (names_.count(name)) return name;
  for (const auto& p : Primitives()) {
    if (name != p.name) continue;
    names_.insert(name);
    rules_.emplace_back(name, p.body);
    for (const char* d : p.deps) Primitive(d);
  }
  return name;
}

absl::StatusOr<std::string> SchemaCompiler::Run() {
  names_.insert("root");
  auto body = Compile(root_, "#", 0);
  if (!body.ok()) return body.status();
  std::string out = absl::StrCat("root ::= ", *body, "\n");
  for (const auto& [name, b] : rules_) absl::StrAppend(&out, name, " ::= ", b, "\n");
  return out;
}

absl::StatusOr<std::string> SchemaCompiler::CompileRef(const std::string& ref, const std::string& path,
                                                       int depth) {
  auto known = refs_.find(ref);
  if (known != refs_.end()) return known->second;
  if (ref.empty() || ref[0] != '#') {
    return Error(path, absl::StrCat("only local $ref ('#...') are supported, not '", ref, "'"));
  }
  const OrderedJson* target = &root_;
  std::string rest = ref.substr(1), last = "root";
  if (!rest.empty() && rest[0] != '/') return Error(path, absl::StrCat("$ref '", ref, "': anchors are not supported"));
  while (!rest.empty()) {
    size_t next = rest.find('/', 1);
    const std::string seg = UnescapeSegment(rest.substr(1, next == std::string::npos ? std::string::npos : next - 1));
    rest = next == std::string::npos ? "" : rest.substr(next);
    if (target->is_object() && target->contains(seg)) {
      target = &(*target)[seg];
    } else if (target->is_array() && !seg.empty() && seg.find_first_not_of("0123456789") == std::string::npos &&
               seg.size() < 9 && std::stoul(seg) < target->size()) {
      target = &(*target)[std::stoul(seg)];
    } else {
      return Error(path, absl::StrCat("$ref '", ref, "' points nowhere"));
    }
    last = seg;
  }
  // Name the rule before compiling its body, so that recursion refers to it.
  std::string name = SanitizeName("ref-" + last);
  for (int i = 2; names_.count(name); ++i) name = absl::StrCat(SanitizeName("ref-" + last), "-", i);
  names_.insert(name);
  refs_.emplace(ref, name);
  const size_t slot = rules_.size();
  rules_.emplace_back(name, "");
  auto body = Compile(*target, ref, depth + 1);
  if (!body.ok()) return body.status();
  rules_[slot].second = *body;
  return name;
}

absl::StatusOr<OrderedJson> SchemaCompiler::WithType(const OrderedJson& branch, const OrderedJson& type,
                                                     const std::string& path) const {
  auto as_list = [](const OrderedJson& t) {
    std::vector<std::string> out;
    if (t.is_string()) out.push_back(t.get<std::string>());
    if (t.is_array()) {
      for (const auto& x : t) {
        if (x.is_string()) out.push_back(x.get<std::string>());
      }
    }
    return out;
  };
  if (branch.is_boolean()) return OrderedJson{{"type", type}};
  if (!branch.is_object()) return branch;  // Compile reports it
  if (branch.contains("$ref")) return Error(path, "'type' next to a '$ref' branch is not supported");
  OrderedJson merged = branch;
  if (!branch.contains("type")) {
    merged["type"] = type;
    return merged;
  }
  OrderedJson common = OrderedJson::array();  // "integer" is within "number"
  for (const auto& a : as_list(type)) {
    for (const auto& b : as_list(branch["type"])) {
      if (a == b || (a == "number" && b == "integer")) common.push_back(b);
      if (a == "integer" && b == "number") common.push_back(a);
    }
  }
  if (common.empty()) return OrderedJson();  // null: the branch matches nothing
  merged["type"] = common;
  return merged;
}

absl::StatusOr<std::string> SchemaCompiler::Compile(const OrderedJson& s, const std::string& path, int depth) {
  if (depth > opts_.max_schema_depth) {
    return Error(path, absl::StrCat("schemas nested deeper than ", opts_.max_schema_depth));
  }
  if (s.is_boolean()) {
    if (s.get<bool>()) return Primitive("json-value");
    return Error(path, "the schema false matches nothing");
  }
  if (!s.is_object()) return Error(path, "a schema must be an object or a boolean");
  for (const auto& [k, v] : s.items()) {
    if (Ignored().count(k)) continue;
    if (!Supported().count(k)) return Error(path, absl::StrCat("unsupported keyword '", k, "'"));
  }
  if (s.contains("uniqueItems") && !(s["uniqueItems"].is_boolean() && !s["uniqueItems"].get<bool>())) {
    return Error(path, "unsupported keyword 'uniqueItems' (only false is accepted)");
  }
  const std::vector<std::string> constraints = Constraints(s);
  auto alone = [&](const char* key, std::vector<std::string> also) -> absl::Status {
    also.push_back(key);
    for (const auto& c : constraints) {
      if (std::find(also.begin(), also.end(), c) == also.end()) {
        return Error(path, absl::StrCat("'", c, "' next to '", key, "' is not supported"));
      }
    }
    return absl::OkStatus();
  };
  if (s.contains("$ref")) {
    if (auto st = alone("$ref", {}); !st.ok()) return st;
    if (!s["$ref"].is_string()) return Error(path, "'$ref' must be a string");
    return CompileRef(s["$ref"].get<std::string>(), path, depth);
  }
  if (s.contains("allOf")) {
    if (auto st = alone("allOf", {}); !st.ok()) return st;
    const auto& all = s["allOf"];
    if (!all.is_array() || all.size() != 1) {
      return Error(path, "'allOf' is supported with exactly one schema");
    }
    return Compile(all[0], path + "/allOf/0", depth + 1);
  }
  if (s.contains("anyOf") || s.contains("oneOf")) {
    const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";  // oneOf is treated as anyOf
    if (auto st = alone(key, {"type"}); !st.ok()) return st;
    const auto& alts = s[key];
    if (!alts.is_array() || alts.empty()) return Error(path, absl::StrCat("'", key, "' must be a non-empty array"));
    std::vector<std::string> out;
    for (size_t i = 0; i < alts.size(); ++i) {
      if (alts[i].is_boolean() && !alts[i].get<bool>()) continue;  // matches nothing: drop it
      const std::string sub_path = absl::StrCat(path, "/", key, "/", i);
      OrderedJson merged;  // a sibling "type" applies to every branch
      if (s.contains("type")) {
        auto m = WithType(alts[i], s["type"], sub_path);
        if (!m.ok()) return m.status();
        if (m->is_null()) continue;  // no type in common
        merged = std::move(*m);
      }
      auto a = Compile(s.contains("type") ? merged : alts[i], sub_path, depth + 1);
      if (!a.ok()) return a.status();
      out.push_back(*a);
    }
    if (out.empty()) return Error(path, absl::StrCat("every schema of '", key, "' is false: nothing matches"));
    return out.size() == 1 ? out[0] : absl::StrCat("( ", absl::StrJoin(out, " | "), " )");
  }
  // Types: given, or inferred from the keywords present.
  std::vector<std::string> types;
  if (s.contains("type")) {
    const auto& t = s["type"];
    if (t.is_string()) {
      types.push_back(t.get<std::string>());
    } else if (t.is_array() && !t.empty()) {
      for (const auto& x : t) {
        if (!x.is_string()) return Error(path, "'type' must be a string or an array of strings");
        types.push_back(x.get<std::string>());
      }
    } else {
      return Error(path, "'type' must be a string or a non-empty array of strings");
    }
    static const std::set<std::string> kTypes = {"null", "boolean", "string", "number", "integer", "object", "array"};
    for (const auto& x : types) {
      if (!kTypes.count(x)) return Error(path, absl::StrCat("unknown type '", x, "'"));
    }
  }
  auto type_ok = [&](const OrderedJson& v) {
    if (types.empty()) return true;
    for (const auto& t : types) {
      if (MatchesType(v, t)) return true;
    }
    return false;
  };
  if (s.contains("const") || s.contains("enum")) {
    const bool is_const = s.contains("const");
    const char* key = is_const ? "const" : "enum";
    if (auto st = alone(key, {"type"}); !st.ok()) return st;
    std::vector<OrderedJson> values;
    if (is_const) {
      values.push_back(s["const"]);
    } else {
      if (!s["enum"].is_array() || s["enum"].empty()) return Error(path, "'enum' must be a non-empty array");
      for (const auto& v : s["enum"]) values.push_back(v);
    }
    std::vector<std::string> lits;
    std::set<std::string> seen;
    for (const auto& v : values) {
      const std::string text = CanonicalJson(v);
      if (type_ok(v) && seen.insert(text).second) lits.push_back(GbnfLiteral(text));
    }
    if (lits.empty()) return Error(path, absl::StrCat("no value of '", key, "' has the given type"));
    return lits.size() == 1 ? lits[0] : absl::StrCat("( ", absl::StrJoin(lits, " | "), " )");
  }
  if (types.empty()) {
    auto has = [&](std::initializer_list<const char*> keys) {
      for (const char* k : keys) {
        if (s.contains(k)) return true;
      }
      return false;
    };
    if (has({"properties", "required", "additionalProperties"})) types.push_back("object");
    if (has({"items", "prefixItems", "additionalItems", "minItems", "maxItems"})) types.push_back("array");
    if (has({"minLength", "maxLength", "pattern"})) types.push_back("string");
    if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
    if (types.empty()) return Primitive("json-value");
  }
  if (std::find(types.begin(), types.end(), "number") != types.end()) {
    std::erase(types, std::string("integer"));  // number includes integer
  }
  std::vector<std::string> out;
  for (const auto& t : types) {
    auto a = CompileTyped(s, t, path, depth);
    if (!a.ok()) return a.status();
    out.push_back(*a);
  }
  return out.size() == 1 ? out[0] : absl::StrCat("( ", absl::StrJoin(out, " | "), " )");
}

absl::StatusOr<std::string> JsonSchemaToGbnf(std::string_view schema_json, const JsonSchemaOptions& opts) {
  if (!JsonNestingWithin(schema_json, opts.max_schema_depth)) {
    return absl::InvalidArgumentError(
        absl::StrCat("json schema: nested deeper than ", opts.max_schema_depth, " levels"));
  }
  OrderedJson root = OrderedJson::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("json schema: not valid JSON");
  return SchemaCompiler(root, opts).Run();
}

absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(std::string_view schema_json,
                                                                 const JsonSchemaOptions& opts) {
  auto gbnf = JsonSchemaToGbnf(schema_json, opts);
  if (!gbnf.ok()) return gbnf.status();
  return CompileGbnf(*gbnf, opts.limits);
}

std::string JsonObjectGbnf() {
  OrderedJson schema = {{"type", "object"}, {"additionalProperties", true}};
  JsonSchemaOptions opts;
  auto g = SchemaCompiler(schema, opts).Run();
  return g.ok() ? *g : std::string();
}

std::shared_ptr<const Grammar> JsonObjectGrammar() {
  static const std::shared_ptr<const Grammar> g = [] {
    auto c = CompileGbnf(JsonObjectGbnf());
    return c.ok() ? *c : nullptr;
  }();
  return g;
}

}  // namespace rwkvx::grammar
