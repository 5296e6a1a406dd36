// Private to engine/sampling/grammar: the middle stage of compilation. Each GBNF rule
// becomes a byte automaton with epsilon edges and rule calls (Thompson construction;
// code point classes become UTF-8 byte sequences). grammar_compile.cc checks it (left
// recursion), inlines small rules and determinizes it into a Grammar. Plain values; pure
// functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sampling/grammar/gbnf_ast.h"
#include "engine/sampling/grammar/grammar.h"

namespace rwkvx::grammar {

struct NfaNode {
  std::vector<ByteEdge> bytes;  // `to` is a node index within the same rule
  std::vector<CallEdge> calls;  // `ret` likewise
  std::vector<int32_t> eps;
  bool accept = false;
};

struct NfaRule {
  std::string name;
  std::vector<NfaNode> nodes;
  int32_t start = 0;
};

struct Nfa {
  std::vector<NfaRule> rules;
  int32_t root = 0;
};

absl::StatusOr<Nfa> BuildNfa(const GbnfAst& ast, const GrammarLimits& limits);

// A class's code points, sorted and merged, surrogates (U+D800-DFFF) removed; `negated`
// complements it within U+0000-10FFFF.
CodepointRanges NormalizeClass(const CodepointRanges& ranges, bool negated);

// The UTF-8 encodings of the code points lo..hi (no surrogates inside) as sequences of
// byte ranges: every encoding matches exactly one sequence, and nothing else matches.
using ByteRangeSeq = std::vector<std::pair<uint8_t, uint8_t>>;
void Utf8Sequences(uint32_t lo, uint32_t hi, std::vector<ByteRangeSeq>* out);

}  // namespace rwkvx::grammar
