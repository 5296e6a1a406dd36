// Private to engine/sampling/grammar: the syntax tree of a GBNF grammar (llama.cpp's
// dialect) as the parser produces it, before it becomes byte automata (nfa.h). Plain
// values; pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampling/grammar/grammar.h"

namespace rwkvx::grammar {

// Code point ranges [first, second], inclusive.
using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;

struct GbnfExpr {
  enum class Kind {
    kAlt,     // children: alternatives (at least one; an empty kSeq is the empty string)
    kSeq,     // children: in order
    kBytes,   // bytes: a literal, already UTF-8 encoded
    kClass,   // ranges (and negated): one code point; kAny is a class of every code point
    kRef,     // rule: index into GbnfAst::rules (resolved after parsing)
    kRepeat,  // children[0] repeated min..max times (max < 0: unbounded)
  };
  Kind kind = Kind::kSeq;
  std::vector<GbnfExpr> children;
  std::string bytes;
  CodepointRanges ranges;
  bool negated = false;
  int32_t rule = -1;
  int min = 0, max = 0;
  int line = 0, column = 0;  // where it starts in the text (refs: for "undefined rule")
  std::string name;          // kRef: the referenced rule's name until resolved
};

struct GbnfRule {
  std::string name;
  GbnfExpr body;
  int line = 0, column = 0;
};

struct GbnfAst {
  std::vector<GbnfRule> rules;  // definition order
  int32_t root = -1;            // index of the rule named "root"
};

// Parses GBNF text: `name ::= body` rules, `|`, sequences, `( )`, `* + ? {m} {m,} {m,n}
// {,n}`, "literals" and [classes] with escapes (\n \r \t \\ \" \' \[ \] \- \xHH \uHHHH
// \UHHHHHHHH), `.`, `#` comments. A rule's body continues on the next line inside
// parentheses, after `|`, `::=`, or when the next line starts with `|`. Errors are
// InvalidArgument naming the line and column (1-based, in bytes).
absl::StatusOr<GbnfAst> ParseGbnfText(std::string_view text, const GrammarLimits& limits);

}  // namespace rwkvx::grammar
