// The per-type parts of the JSON schema compiler (json_schema_compiler.h): strings with
// length bounds, numbers and integers with bounds, objects (properties in schema order,
// commas right whatever is omitted, additional properties with keys other than the
// declared ones), arrays (prefix items, item counts).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/sampling/grammar/json_schema_compiler.h"
#include "engine/status_macros.h"

namespace rwkvx::grammar {
namespace {

// One JSON string character (raw or escaped), as GBNF.
constexpr const char* kJsonChar = "( [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )";

std::string Repeat(const std::string& item, int lo, int hi) {  // hi < 0: unbounded
  if (hi == lo) return lo == 0 ? "" : lo == 1 ? item : absl::StrCat(item, "{", lo, "}");
  if (hi < 0) return lo == 0 ? item + "*" : lo == 1 ? item + "+" : absl::StrCat(item, "{", lo, ",}");
  if (lo == 0 && hi == 1) return item + "?";
  return absl::StrCat(item, "{", lo, ",", hi, "}");
}

}  // namespace

absl::Status SchemaCompiler::LengthBounds(const OrderedJson& s, const char* min_key, const char* max_key,
                                          const std::string& path, int* lo, int* hi) const {
  *lo = 0;
  *hi = -1;  // unbounded
  for (const char* key : {min_key, max_key}) {
    if (!s.contains(key)) continue;
    const auto& v = s[key];
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() != std::floor(v.get<double>())) {
      return Error(path, absl::StrCat("'", key, "' must be a non-negative integer"));
    }
    if (v.get<double>() > opts_.max_length_bound) {
      return Error(path, absl::StrCat("'", key, "' above ", opts_.max_length_bound, " is not supported"));
    }
    *(key == min_key ? lo : hi) = static_cast<int>(v.get<double>());
  }
  if (*hi >= 0 && *hi < *lo) return Error(path, absl::StrCat(max_key, " is below ", min_key));
  return absl::OkStatus();
}

absl::StatusOr<std::string> SchemaCompiler::CompileTyped(const OrderedJson& s, const std::string& type,
                                                         const std::string& path, int depth) {
  if (type == "string") return CompileString(s, path);
  if (type == "number" || type == "integer") return CompileNumber(s, type == "integer", path);
  if (type == "boolean") return std::string("( \"true\" | \"false\" )");
  if (type == "null") return std::string("\"null\"");
  if (type == "object") return CompileObject(s, path, depth);
  return CompileArray(s, path, depth);
}

absl::StatusOr<std::string> SchemaCompiler::CompileString(const OrderedJson& s, const std::string& path) {
  if (s.contains("pattern")) {  // canonical text matching the expression (json_schema_pattern.cc)
    if (!s["pattern"].is_string()) return Error(path, "'pattern' must be a string");
    for (const char* k : {"minLength", "maxLength"}) {
      if (s.contains(k)) return Error(path, absl::StrCat("'pattern' next to '", k, "' is not supported"));
    }
    auto g = PatternGbnf(s["pattern"].get<std::string>());
    if (!g.ok()) return Error(path, std::string(g.status().message()));
    return AddRule("string-pattern", *g);
  }
  int lo, hi;
  RWKVX_RETURN_IF_ERROR(LengthBounds(s, "minLength", "maxLength", path, &lo, &hi));
  if (lo == 0 && hi < 0) return Primitive("json-string");
  return AddRule(absl::StrCat("string-", lo, "-", hi < 0 ? std::string("inf") : std::to_string(hi)),
                 absl::StrCat("\"\\\"\" ", Repeat(kJsonChar, lo, hi), " \"\\\"\""));
}

absl::StatusOr<std::string> SchemaCompiler::CompileNumber(const OrderedJson& s, bool integer, const std::string& path) {
  // Lower and upper bounds as (value, exclusive); draft 4's boolean exclusive* modify
  // minimum/maximum, later drafts' numeric ones are bounds of their own.
  std::optional<std::pair<double, bool>> lo, hi;
  auto number = [&](const char* key) -> absl::StatusOr<double> {
    if (!s[key].is_number() || !std::isfinite(s[key].get<double>())) {
      return Error(path, absl::StrCat("'", key, "' must be a number"));
    }
    return s[key].get<double>();
  };
  auto tighten = [](std::optional<std::pair<double, bool>>* b, double v, bool excl, bool lower) {
    if (!*b || (lower ? v > (*b)->first : v < (*b)->first) || (v == (*b)->first && excl)) *b = std::make_pair(v, excl);
  };
  for (const bool lower : {true, false}) {
    const char* plain = lower ? "minimum" : "maximum";
    const char* excl = lower ? "exclusiveMinimum" : "exclusiveMaximum";
    auto* b = lower ? &lo : &hi;
    const bool draft4_excl = s.contains(excl) && s[excl].is_boolean() && s[excl].get<bool>();
    if (s.contains(plain)) {
      auto v = number(plain);
      if (!v.ok()) return v.status();
      tighten(b, *v, draft4_excl, lower);
    } else if (draft4_excl) {
      return Error(path, absl::StrCat("'", excl, "': true needs '", plain, "'"));
    }
    if (s.contains(excl) && !s[excl].is_boolean()) {
      auto v = number(excl);
      if (!v.ok()) return v.status();
      tighten(b, *v, true, lower);
    }
  }
  if (!lo && !hi) return Primitive(integer ? "json-integer" : "json-number");
  constexpr double kLimit = 9.0e15;  // exact in a double and in int64
  for (const auto* b : {&lo, &hi}) {
    if (*b && std::fabs((*b)->first) > kLimit) {
      return Error(path, "bounds beyond +-9e15 are not supported");
    }
  }
  if (integer) {
    std::optional<int64_t> a, z;
    if (lo) a = static_cast<int64_t>(lo->second ? std::floor(lo->first) + 1 : std::ceil(lo->first));
    if (hi) z = static_cast<int64_t>(hi->second ? std::ceil(hi->first) - 1 : std::floor(hi->first));
    if (a && z && *a > *z) return Error(path, "no integer lies within minimum/maximum");
    return AddRule("integer-range", IntegerRangeGbnf(a, z));
  }
  std::optional<DecimalBound> a, z;
  for (const auto& [b, out] : {std::make_pair(&lo, &a), std::make_pair(&hi, &z)}) {
    if (!*b) continue;
    auto d = DecimalFromDouble((*b)->first, (*b)->second);
    if (!d.ok()) return Error(path, std::string(d.status().message()));
    *out = *d;
  }
  const std::string body = DecimalRangeGbnf(a, z);
  if (body.empty()) return Error(path, "no number lies within minimum/maximum");
  return AddRule("number-range", body);
}

absl::StatusOr<std::string> SchemaCompiler::CompileObject(const OrderedJson& s, const std::string& path, int depth) {
  std::vector<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) return Error(path, "'required' must be an array of strings");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) return Error(path, "'required' must be an array of strings");
      required.push_back(r.get<std::string>());
    }
  }
  auto is_required = [&](const std::string& k) {
    return std::find(required.begin(), required.end(), k) != required.end();
  };
  // Additional properties: omitted means none (strict), true or a schema allows them.
  const OrderedJson* extra = nullptr;
  const bool explicit_false = s.contains("additionalProperties") && s["additionalProperties"].is_boolean() &&
                              !s["additionalProperties"].get<bool>();
  if (s.contains("additionalProperties") && !explicit_false) extra = &s["additionalProperties"];
  struct Prop {
    std::string name, value;
    bool required;
  };
  std::vector<Prop> props;
  std::vector<std::string> declared;
  if (s.contains("properties")) {
    if (!s["properties"].is_object()) return Error(path, "'properties' must be an object");
    for (const auto& [k, sub] : s["properties"].items()) {
      declared.push_back(k);
      if (sub.is_boolean() && !sub.get<bool>()) {  // the property must not appear
        if (is_required(k)) return Error(path, absl::StrCat("required property '", k, "' has the schema false"));
        continue;
      }
      auto v = Compile(sub, absl::StrCat(path, "/properties/", k), depth + 1);
      if (!v.ok()) return v.status();
      props.push_back({k, *v, is_required(k)});
    }
  }
  for (const auto& r : required) {  // required but not declared: any value
    if (std::find(declared.begin(), declared.end(), r) != declared.end()) continue;
    if (explicit_false) {
      return Error(path, absl::StrCat("required property '", r, "' is not in 'properties' and additionalProperties is false"));
    }
    declared.push_back(r);
    props.push_back({r, Primitive("json-value"), true});
  }
  std::string extra_kv;
  if (extra) {
    auto v = Compile(*extra, path + "/additionalProperties", depth + 1);
    if (!v.ok()) return v.status();
    auto key = ExcludingKeys(declared);
    if (!key.ok()) return key.status();
    extra_kv = AddRule("additional-kv", absl::StrCat(*key, " \":\" ", *v));
  }
  auto kv = [&](const Prop& p) {
    return absl::StrCat(GbnfLiteral(CanonicalJsonString(p.name) + ":"), " ", p.value);
  };
  // after[i]: properties i.. once something was written (each with its leading comma).
  const size_t n = props.size();
  std::vector<std::string> after(n + 1);
  after[n] = extra ? absl::StrCat("( \",\" ", extra_kv, " )*") : "";
  for (size_t i = n; i-- > 0;) {
    const std::string item = absl::StrCat("\",\" ", kv(props[i]));
    after[i] = absl::StrCat(props[i].required ? item : absl::StrCat("( ", item, " )?"), " ", after[i + 1]);
    if (n > 8 && i + 1 < n) after[i] = AddRule("props-after", after[i]);  // keeps the text linear
  }
  // first(i): properties i.. with nothing written yet.
  std::string first = extra ? absl::StrCat("( ", extra_kv, " ", after[n], " )?") : "";
  for (size_t i = n; i-- > 0;) {
    const std::string with = absl::StrCat(kv(props[i]), " ", after[i + 1]);
    first = props[i].required ? with : absl::StrCat("( ", with, " | ", first.empty() ? "\"\"" : first, " )");
  }
  return AddRule("object", absl::StrCat("\"{\" ", first, " \"}\""));
}

absl::StatusOr<std::string> SchemaCompiler::CompileArray(const OrderedJson& s, const std::string& path, int depth) {
  int lo, hi;
  RWKVX_RETURN_IF_ERROR(LengthBounds(s, "minItems", "maxItems", path, &lo, &hi));
  // prefix: the tuple items; rest: the schema of the items after them (none: no more).
  const OrderedJson* prefix = nullptr;
  const OrderedJson* rest = nullptr;
  std::string prefix_key;
  if (s.contains("prefixItems")) {
    prefix = &s["prefixItems"];
    prefix_key = "prefixItems";
    if (s.contains("items")) rest = &s["items"];
  } else if (s.contains("items") && s["items"].is_array()) {
    prefix = &s["items"];
    prefix_key = "items";
    if (s.contains("additionalItems")) rest = &s["additionalItems"];
  } else {
    static const OrderedJson kAny = true;
    rest = s.contains("items") ? &s["items"] : &kAny;
  }
  if (prefix && !prefix->is_array()) return Error(path, absl::StrCat("'", prefix_key, "' must be an array"));
  if (rest && rest->is_boolean() && !rest->get<bool>()) rest = nullptr;
  std::vector<std::string> items;
  if (prefix) {
    for (size_t i = 0; i < prefix->size(); ++i) {
      if ((*prefix)[i].is_boolean() && !(*prefix)[i].get<bool>()) {  // no item can be here: the array ends
        rest = nullptr;
        break;
      }
      auto v = Compile((*prefix)[i], absl::StrCat(path, "/", prefix_key, "/", i), depth + 1);
      if (!v.ok()) return v.status();
      items.push_back(*v);
    }
  }
  std::string rest_expr;
  if (rest) {
    auto v = Compile(*rest, path + "/items", depth + 1);
    if (!v.ok()) return v.status();
    rest_expr = *v;
  }
  const int k = static_cast<int>(items.size());
  if (!rest && lo > k) return Error(path, "minItems is more than the items allowed");
  if (hi >= 0 && hi < k) {
    items.resize(hi);
  }
  // tail(j): what may follow once j items are written.
  std::string tail;
  if (rest && (hi < 0 || hi > static_cast<int>(items.size()))) {
    const int from = static_cast<int>(items.size());
    tail = Repeat(absl::StrCat("( \",\" ", rest_expr, " )"), std::max(0, lo - from), hi < 0 ? -1 : hi - from);
  }
  for (int j = static_cast<int>(items.size()) - 1; j >= 1; --j) {
    const std::string next = absl::StrCat("\",\" ", items[j], " ", tail);
    tail = j + 1 <= lo ? next : absl::StrCat("( ", next, " )?");
  }
  std::string body;
  if (!items.empty()) {
    body = absl::StrCat(items[0], " ", tail);
  } else if (rest) {  // no prefix: the first item, then the rest with commas
    const int more_lo = std::max(0, lo - 1), more_hi = hi < 0 ? -1 : hi - 1;
    body = hi == 0 ? "" : absl::StrCat(rest_expr, " ", Repeat(absl::StrCat("( \",\" ", rest_expr, " )"), more_lo, more_hi));
  }
  if (!body.empty() && lo == 0) body = absl::StrCat("( ", body, " )?");
  return AddRule("array", absl::StrCat("\"[\" ", body, " \"]\""));
}

}  // namespace rwkvx::grammar
