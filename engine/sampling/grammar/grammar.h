// Grammars for constrained decoding: a GBNF grammar (llama.cpp's dialect, docs/GRAMMAR.md)
// compiled into byte-level automata, one per rule, with rule calls (a recursive
// transition network). json_schema.h compiles JSON schemas into GBNF, matcher.h walks a
// compiled Grammar token by token and fills allowed-token masks.
//
// A Grammar is immutable once compiled and shared (shared_ptr<const Grammar>) by any
// number of matchers on any threads. CompileGbnf is a pure function; any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx::grammar {

// Bounds on what one grammar may cost; exceeding one is an InvalidArgument error.
struct GrammarLimits {
  size_t max_text_bytes = 4 << 20;  // GBNF text
  int max_rules = 20000;
  int max_nesting = 100;            // ( ) groups inside each other
  int max_repeat = 10000;           // the n of {m,n}
  int max_nfa_states = 400000;      // automaton states before determinization
  int max_dfa_states = 200000;      // and after
  // Edge checks of the subset construction (each new state's byte intervals against its
  // members' edges): bounds the time a grammar of many wide states takes to fail the state
  // limit above. A fuzzed JSON-schema pattern needed 3.2e8 of them before reaching 200000
  // states (22.8 s in the ASan fuzz build; 2.8 s with this budget); the largest grammar of
  // the unit tests that compiles needs 6.2e5, the [ab]* test that hits the state limit 8.4e6.
  size_t max_determinize_steps = size_t{1} << 24;
  int max_expansion_entries = 500000;  // precomputed closures (matcher.h)
  // Rules that are not recursive are inlined into their caller when they are called from
  // one place only or have at most this many states. Inlining gives the mask caches
  // larger rules to work with; rules left alone are shared by all their callers and their
  // masks are cached across grammars (matcher.h).
  int inline_max_states = 12;
};

// The compiled automaton. Node ids are global; each node belongs to one rule. After
// compilation every rule is deterministic over bytes (its byte edges are disjoint and
// sorted) and has no epsilon edges; calls are kept as edges.
struct ByteEdge {
  uint8_t lo = 0, hi = 0;  // inclusive byte range
  int32_t to = 0;
};
struct CallEdge {
  int32_t rule = 0;  // the called rule
  int32_t ret = 0;   // where the caller continues once it completes
};
// One way to reach a node with byte edges from a node without consuming input: push
// `chain` (return nodes, outermost first) on the caller's stack, then `top`.
struct Expansion {
  int32_t top = 0;
  uint32_t chain_begin = 0, chain_end = 0;  // into Grammar::chains
};

struct GrammarNode {
  int32_t rule = 0;
  bool accept = false;          // the rule may complete here
  bool pops = false;            // the closure reaches the rule's end (see Expansion)
  uint32_t edge_begin = 0, edge_end = 0;  // into Grammar::edges
  uint32_t call_begin = 0, call_end = 0;  // into Grammar::calls
  uint32_t exp_begin = 0, exp_end = 0;    // into Grammar::expansions
};

struct GrammarRule {
  std::string name;
  int32_t start = 0;  // node id
  int32_t first_node = 0, num_nodes = 0;  // the rule's nodes are contiguous
};

class Grammar {
 public:
  std::vector<GrammarRule> rules;
  std::vector<GrammarNode> nodes;
  std::vector<ByteEdge> edges;
  std::vector<CallEdge> calls;
  std::vector<Expansion> expansions;
  std::vector<int32_t> chains;
  int32_t root = 0;  // rule index

  // For each rule: a canonical text of the rule and every rule it can call, the same for
  // two grammars exactly when their rules behave the same (the mask cache's key), and
  // each node's index in that canonical order.
  std::vector<std::string> rule_keys;
  std::vector<int32_t> canonical_index;  // per node

  // A readable dump of the automata (tests, debugging).
  std::string DebugString() const;
};

// Parses and compiles GBNF text. Errors (InvalidArgument): syntax (with line and column),
// undefined or duplicate rules, a missing `root`, left recursion, and limits exceeded.
absl::StatusOr<std::shared_ptr<const Grammar>> CompileGbnf(std::string_view gbnf,
                                                          const GrammarLimits& limits = {});

}  // namespace rwkvx::grammar
