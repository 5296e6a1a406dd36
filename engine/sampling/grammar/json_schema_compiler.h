// Private to engine/sampling/grammar: the JSON schema compiler's state (json_schema.cc
// drives it; json_schema_types.cc and json_schema_number.cc hold the per-type parts;
// json_text.cc the canonical JSON and GBNF literal helpers). One compiler per call, one
// thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampling/grammar/json_schema.h"
#include "nlohmann/json.hpp"

namespace rwkvx::grammar {

using OrderedJson = nlohmann::ordered_json;

// Canonical compact JSON text of a value (json.dumps(v, ensure_ascii=False,
// separators=(",", ":")) with integral floats written as integers).
std::string CanonicalJson(const OrderedJson& v);
// The canonical JSON string literal of `s` (quotes included).
std::string CanonicalJsonString(const std::string& s);
// A GBNF literal matching exactly `bytes`.
std::string GbnfLiteral(std::string_view bytes);

// GBNF for the JSON strings (quotes included, canonical form) whose value matches the
// ECMA-262 regular expression `pattern` anywhere (JSON schema's `pattern`; the supported
// subset: json_schema_pattern.cc). InvalidArgument "pattern: ..." for what is not supported.
absl::StatusOr<std::string> PatternGbnf(std::string_view pattern);

// GBNF for the integers in [lo, hi] (either side open when absent), in JSON's canonical
// form (no leading zeros, no "-0").
std::string IntegerRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi);

// A bound of a range of decimal numbers: int_part.frac, frac without trailing zeros.
struct DecimalBound {
  bool negative = false;
  uint64_t int_part = 0;
  std::string frac;
  bool exclusive = false;
};
// The bound written as the shortest decimal that reads back as `v` (as the schema most
// likely wrote it). InvalidArgument beyond 9e15 or with more than 20 decimals.
absl::StatusOr<DecimalBound> DecimalFromDouble(double v, bool exclusive);
// GBNF for the decimal numbers (no exponent) within the bounds (either side open when
// absent), canonical integer part, no "-0"; "" when no number is.
std::string DecimalRangeGbnf(std::optional<DecimalBound> lo, std::optional<DecimalBound> hi);

class SchemaCompiler {
 public:
  SchemaCompiler(const OrderedJson& root, const JsonSchemaOptions& opts) : root_(root), opts_(opts) {}
  // The whole grammar, `root ::= ...` first.
  absl::StatusOr<std::string> Run();

  // A GBNF expression (a rule name or a parenthesized expression) for `schema` found at
  // JSON pointer `path`.
  absl::StatusOr<std::string> Compile(const OrderedJson& schema, const std::string& path, int depth);

 private:
  absl::Status Error(const std::string& path, const std::string& what) const;
  // Adds `name ::= body` (a fresh name based on `hint` unless the same body exists).
  std::string AddRule(const std::string& hint, const std::string& body);
  // A shared primitive rule (json-string, json-value, ...), emitted on first use.
  std::string Primitive(const std::string& name);
  // `branch` of an anyOf/oneOf with a sibling "type" folded in (types intersected); null
  // when they have no type in common.
  absl::StatusOr<OrderedJson> WithType(const OrderedJson& branch, const OrderedJson& type, const std::string& path) const;
  absl::StatusOr<std::string> CompileRef(const std::string& ref, const std::string& path, int depth);
  absl::StatusOr<std::string> CompileTyped(const OrderedJson& s, const std::string& type,
                                           const std::string& path, int depth);
  absl::StatusOr<std::string> CompileString(const OrderedJson& s, const std::string& path);
  absl::StatusOr<std::string> CompileNumber(const OrderedJson& s, bool integer, const std::string& path);
  absl::StatusOr<std::string> CompileObject(const OrderedJson& s, const std::string& path, int depth);
  absl::StatusOr<std::string> CompileArray(const OrderedJson& s, const std::string& path, int depth);
  absl::StatusOr<std::string> ExcludingKeys(const std::vector<std::string>& keys);
  // minLength/maxLength or minItems/maxItems: *lo (0 if absent), *hi (-1 if absent).
  absl::Status LengthBounds(const OrderedJson& s, const char* min_key, const char* max_key, const std::string& path,
                            int* lo, int* hi) const;

  const OrderedJson& root_;
  const JsonSchemaOptions& opts_;
  std::vector<std::pair<std::string, std::string>> rules_;  // emission order
  std::set<std::string> names_;
  std::map<std::string, std::string> by_body_;  // body -> rule name
  std::map<std::string, std::string> refs_;     // JSON pointer -> rule name
};

}  // namespace rwkvx::grammar
