// Structured output for the Service: a request's output format (response_format
// json_object / json_schema, or a GBNF grammar) compiled into a grammar bound to the
// served tokenizer's vocabulary (engine/sampling/grammar/). The scheduler's
// ActiveRequest walks it token by token and masks each logits row (docs/GRAMMAR.md).
//
// Threads: the compiler is called by Service on the caller's (frontend) thread, never on
// the scheduler's loop; it is thread-safe (the vocabulary is built once, under a
// once_flag; compiled grammars are kept in a small cache under a mutex). The TokenGrammar
// it returns is immutable and shared.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/sampling/grammar/token_masks.h"
#include "engine/sampling/grammar/vocabulary.h"
#include "engine/tokenizer/tokenizer.h"

namespace rwkvx {

// What the output must look like. kText: anything (no grammar).
struct OutputFormat {
  enum class Kind { kText, kJsonObject, kJsonSchema, kGrammar, kRegex };
  Kind kind = Kind::kText;
  // kJsonSchema: the schema as JSON text; kGrammar: GBNF text; kRegex: a regular expression
  // the whole output matches (grammar::RegexToGbnf)
  std::string text;
  std::string where; // how the client named the field, for error messages
};

class StructuredOutputCompiler {
 public:
  // `tok` must outlive the compiler.
  explicit StructuredOutputCompiler(const Tokenizer* tok, size_t max_cached = 64)
      : tok_(tok), max_cached_(max_cached) {}

  // Null for kText; InvalidArgument naming the field and the problem for a bad schema
  // or grammar.
  absl::StatusOr<std::shared_ptr<const grammar::TokenGrammar>> Compile(const OutputFormat& f);

  // The served tokenizer's vocabulary (built on first use; thread-safe).
  std::shared_ptr<const grammar::TokenVocabulary> Vocabulary();

 private:
  const Tokenizer* tok_;
  const size_t max_cached_;
  std::once_flag vocab_once_;
  std::shared_ptr<const grammar::TokenVocabulary> vocab_;
  std::mutex mu_;  // guards the cache
  absl::flat_hash_map<std::string, std::shared_ptr<const grammar::TokenGrammar>> cache_;
  std::deque<std::string> order_;  // oldest first
};

}  // namespace rwkvx
