// Private to engine/sampling/grammar: checks and rewrites of an Nfa (nfa.h) before it is
// determinized (grammar_compile.cc). Pure functions; any thread.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "engine/sampling/grammar/nfa.h"

namespace rwkvx::grammar {

// Rules reachable from the root through calls (root first is not guaranteed).
std::vector<bool> ReachableRules(const Nfa& nfa);

// Removes what can never complete: rules that match no text at all, and in every rule
// the states from which the rule's end cannot be reached (with their edges). A root that
// matches nothing is an error.
absl::Status PruneUnproductive(Nfa* nfa);

// InvalidArgument naming the rules when a rule can call itself without consuming input
// (directly or through others, across empty-matching prefixes).
absl::Status CheckLeftRecursion(const Nfa& nfa);

// Inlines calls of non-recursive rules called from one place or with at most
// limits.inline_max_states states, callees first; then drops rules nothing calls.
absl::Status InlineSmallRules(const GrammarLimits& limits, Nfa* nfa);

// The strongly connected components of the call graph, callees before callers.
std::vector<std::vector<int32_t>> CallGraphSccs(const Nfa& nfa);
// The same for any graph given as successor lists (succ[v] = v's successors).
std::vector<std::vector<int32_t>> StronglyConnected(const std::vector<std::vector<int32_t>>& succ);

}  // namespace rwkvx::grammar
