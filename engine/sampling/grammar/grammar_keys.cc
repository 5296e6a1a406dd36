// Canonical rule keys (grammar_keys.h). A rule's key is its automaton serialized in a
// canonical node order (breadth-first from the start); a call names its callee by the
// callee's 128-bit digest when the callee is outside the caller's recursion cycle, and by
// discovery order inside it (the whole cycle is serialized from this rule). Cycles of more
// than kMaxSccRules rules get a key unique to the grammar (no sharing).
#include <algorithm>
#include <deque>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/grammar_keys.h"
#include "engine/sampling/grammar/nfa_passes.h"

namespace rwkvx::grammar {
namespace {

constexpr size_t kMaxSccRules = 64;

void Put(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), sizeof v); }

// Canonical order of one rule's nodes; fills canonical_index for them.
std::vector<int32_t> CanonicalOrder(Grammar* g, int32_t r) {
  const GrammarRule& rule = g->rules[r];
  std::vector<int32_t> order;
  std::vector<bool> seen(rule.num_nodes, false);
  std::deque<int32_t> todo = {rule.start};
  seen[rule.start - rule.first_node] = true;
  auto visit = [&](int32_t n) {
    if (!seen[n - rule.first_node]) {
      seen[n - rule.first_node] = true;
      todo.push_back(n);
    }
  };
  while (!todo.empty()) {
    const int32_t n = todo.front();
    todo.pop_front();
    g->canonical_index[n] = static_cast<int32_t>(order.size());
    order.push_back(n);
    const GrammarNode& x = g->nodes[n];
    for (uint32_t k = x.edge_begin; k < x.edge_end; ++k) visit(g->edges[k].to);
    for (uint32_t k = x.call_begin; k < x.call_end; ++k) visit(g->calls[k].ret);
  }
  for (int32_t n = rule.first_node; n < rule.first_node + rule.num_nodes; ++n) {
    if (!seen[n - rule.first_node]) {  // unreachable from the start: still serialized
      g->canonical_index[n] = static_cast<int32_t>(order.size());
      order.push_back(n);
    }
  }
  return order;
}

}  // namespace

void ComputeRuleKeys(Grammar* g) {
  const size_t nr = g->rules.size();
  g->canonical_index.assign(g->nodes.size(), 0);
  std::vector<std::vector<int32_t>> orders(nr);
  std::vector<std::vector<int32_t>> succ(nr);
  for (size_t r = 0; r < nr; ++r) {
    orders[r] = CanonicalOrder(g, static_cast<int32_t>(r));
    for (int32_t n : orders[r]) {
      const GrammarNode& x = g->nodes[n];
      for (uint32_t k = x.call_begin; k < x.call_end; ++k) succ[r].push_back(g->calls[k].rule);
    }
  }
  g->rule_keys.assign(nr, std::string());
  std::vector<std::string> digest(nr);
  std::vector<int32_t> scc_of(nr, -1);
  const auto sccs = StronglyConnected(succ);
  for (size_t s = 0; s < sccs.size(); ++s) {
    for (int32_t r : sccs[s]) scc_of[r] = static_cast<int32_t>(s);
  }
  for (size_t s = 0; s < sccs.size(); ++s) {  // callees first
    for (int32_t r : sccs[s]) {
      std::string key;
      if (sccs[s].size() > kMaxSccRules) {
        key = absl::StrCat("unique:", reinterpret_cast<uintptr_t>(g), ":", r);
      } else {
        // Serialize the cycle's rules in discovery order from r.
        std::vector<int32_t> found = {r};
        for (size_t i = 0; i < found.size(); ++i) {
          const int32_t q = found[i];
          Put(&key, 0xFFFFFFFFu);
          for (int32_t n : orders[q]) {
            const GrammarNode& x = g->nodes[n];
            Put(&key, (x.accept ? 1u : 0u) | (x.edge_end - x.edge_begin) << 1);
            for (uint32_t k = x.edge_begin; k < x.edge_end; ++k) {
              Put(&key, g->edges[k].lo | g->edges[k].hi << 8);
              Put(&key, g->canonical_index[g->edges[k].to]);
            }
            Put(&key, x.call_end - x.call_begin);
            for (uint32_t k = x.call_begin; k < x.call_end; ++k) {
              const CallEdge c = g->calls[k];
              if (scc_of[c.rule] == static_cast<int32_t>(s)) {
                auto it = std::find(found.begin(), found.end(), c.rule);
                if (it == found.end()) it = found.insert(found.end(), c.rule);
                Put(&key, 0x80000000u | static_cast<uint32_t>(it - found.begin()));
              } else {
                Put(&key, 0x40000000u);
                key += digest[c.rule];
              }
              Put(&key, g->canonical_index[c.ret]);
            }
          }
        }
      }
      g->rule_keys[r] = std::move(key);
    }
    for (int32_t r : sccs[s]) {
      const uint64_t a = absl::HashOf(g->rule_keys[r]);
      const uint64_t b = absl::HashOf(g->rule_keys[r], uint64_t{0x9E3779B97F4A7C15ull});
      digest[r].assign(reinterpret_cast<const char*>(&a), 8);
      digest[r].append(reinterpret_cast<const char*>(&b), 8);
    }
  }
}

}  // namespace rwkvx::grammar
