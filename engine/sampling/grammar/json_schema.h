// JSON schema -> GBNF (grammar.h) for structured output (OpenAI response_format
// json_schema / json_object, tool arguments). docs/GRAMMAR.md lists what is supported.
//
// The output is compact JSON: no whitespace at all outside strings (separators "," and
// ":"), so a model cannot spend its tokens on spaces. Object properties come in the
// schema's order (declared ones first, then additional ones where allowed); an omitted
// additionalProperties means false (no undeclared properties), as OpenAI's strict mode
// requires. Unsupported keywords are InvalidArgument errors naming the keyword and where it
// is; annotations (title, description, examples, default, $schema, $id, id, $comment,
// deprecated, readOnly, writeOnly) and `format` are ignored.
//
// Pure functions; any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/sampling/grammar/grammar.h"

namespace rwkvx::grammar {

struct JsonSchemaOptions {
  int max_schema_depth = 64;     // nesting of the schema document (and of subschemas)
  int max_length_bound = 2000;   // largest minLength/maxLength/minItems/maxItems accepted
  GrammarLimits limits;          // for the generated grammar
};

// The GBNF text of a schema (for inspection and tests).
absl::StatusOr<std::string> JsonSchemaToGbnf(std::string_view schema_json, const JsonSchemaOptions& opts = {});
absl::StatusOr<std::shared_ptr<const Grammar>> CompileJsonSchema(std::string_view schema_json,
                                                                 const JsonSchemaOptions& opts = {});

// A regular expression (ECMA-262, the subset JSON schema's `pattern` takes: docs/GRAMMAR.md)
// as a GBNF grammar whose sentences are the texts the expression matches whole (vLLM's
// guided_regex; ^ and $ at the ends change nothing). InvalidArgument "regex: ..." naming
// what is not supported.
absl::StatusOr<std::string> RegexToGbnf(std::string_view regex);

// Any JSON object (response_format json_object), compact, as GBNF; and compiled (built
// once per process).
std::string JsonObjectGbnf();
std::shared_ptr<const Grammar> JsonObjectGrammar();

}  // namespace rwkvx::grammar
