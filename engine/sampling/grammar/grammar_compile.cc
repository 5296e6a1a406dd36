// CompileGbnf (grammar.h): parse, build the automata, check, inline, determinize each
// rule (subset construction; a call edge is a symbol, so calls of one rule from several
// states merge their return states), then precompute each node's expansions and the
// canonical rule keys the mask cache uses.
#include <algorithm>
#include <map>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/sampling/grammar/gbnf_ast.h"
#include "engine/sampling/grammar/grammar_keys.h"
#include "engine/sampling/grammar/nfa.h"
#include "engine/sampling/grammar/nfa_passes.h"
#include "engine/status_macros.h"

namespace rwkvx::grammar {
namespace {

using NodeSet = std::vector<int32_t>;  // sorted NFA node indices of one rule

NodeSet Closure(const NfaRule& rule, NodeSet seeds) {
  std::vector<int32_t> todo = seeds;
  std::set<int32_t> seen(seeds.begin(), seeds.end());
  while (!todo.empty()) {
    const int32_t v = todo.back();
    todo.pop_back();
    for (int32_t t : rule.nodes[v].eps) {
      if (seen.insert(t).second) todo.push_back(t);
    }
  }
  return NodeSet(seen.begin(), seen.end());
}

// One rule's deterministic automaton, node indices local to the rule.
struct DfaRule {
  struct Node {
    std::vector<ByteEdge> bytes;
    std::vector<CallEdge> calls;  // rule = NFA rule index, ret = local node
    bool accept = false;
  };
  std::vector<Node> nodes;  // node 0 is the start
};

absl::StatusOr<DfaRule> Determinize(const NfaRule& rule, const GrammarLimits& limits, int* total,
                                    size_t* total_members, size_t* steps) {
  DfaRule dfa;
  std::map<NodeSet, int32_t> ids;
  std::vector<NodeSet> sets;
  auto intern = [&](NodeSet s) -> absl::StatusOr<int32_t> {
    auto it = ids.find(s);
    if (it != ids.end()) return it->second;
    *total_members += s.size();  // the subsets' sizes bound the work and memory
    if (++*total > limits.max_dfa_states ||
        *total_members > 50 * static_cast<size_t>(limits.max_dfa_states)) {
      return absl::InvalidArgumentError(absl::StrCat("grammar too large: more than ", limits.max_dfa_states,
                                                     " automaton states after determinization"));
    }
    const int32_t id = static_cast<int32_t>(sets.size());
    ids.emplace(s, id);
    sets.push_back(std::move(s));
    dfa.nodes.emplace_back();
    return id;
  };
  auto start = intern(Closure(rule, {rule.start}));
  if (!start.ok()) return start.status();
  for (size_t d = 0; d < sets.size(); ++d) {
    const NodeSet members = sets[d];  // copy: `sets` grows below
    bool accept = false;
    std::vector<uint16_t> cuts = {0, 256};
    std::map<int32_t, NodeSet> call_rets;
    for (int32_t m : members) {
      const NfaNode& n = rule.nodes[m];
      accept |= n.accept;
      for (const auto& e : n.bytes) {
        cuts.push_back(e.lo);
        cuts.push_back(static_cast<uint16_t>(e.hi + 1));
      }
      for (const auto& c : n.calls) call_rets[c.rule].push_back(c.ret);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<ByteEdge> out;
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      const int lo = cuts[k], hi = cuts[k + 1] - 1;
      NodeSet targets;
      for (int32_t m : members) {
        *steps += rule.nodes[m].bytes.size() + 1;
        for (const auto& e : rule.nodes[m].bytes) {
          if (e.lo <= lo && hi <= e.hi) targets.push_back(e.to);
        }
      }
      if (*steps > limits.max_determinize_steps) {
        return absl::InvalidArgumentError(absl::StrCat("grammar too large: determinizing it takes more than ",
                                                       limits.max_determinize_steps, " steps"));
      }
      if (targets.empty()) continue;
      std::sort(targets.begin(), targets.end());
      targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
      auto t = intern(Closure(rule, std::move(targets)));
      if (!t.ok()) return t.status();
      if (!out.empty() && out.back().to == *t && out.back().hi + 1 == lo) {
        out.back().hi = static_cast<uint8_t>(hi);
      } else {
        out.push_back({static_cast<uint8_t>(lo), static_cast<uint8_t>(hi), *t});
      }
    }
    std::vector<CallEdge> calls;
    for (auto& [callee, rets] : call_rets) {
      std::sort(rets.begin(), rets.end());
      rets.erase(std::unique(rets.begin(), rets.end()), rets.end());
      auto t = intern(Closure(rule, rets));
      if (!t.ok()) return t.status();
      calls.push_back({callee, *t});
    }
    dfa.nodes[d].bytes = std::move(out);
    dfa.nodes[d].calls = std::move(calls);
    dfa.nodes[d].accept = accept;
  }
  return dfa;
}

// Fills g->expansions / chains / pops for node `d`: the nodes with byte edges reachable
// without consuming input, each with the return nodes pushed on the way. A return node
// that can only complete (no edges, accepting) is not pushed (a tail call).
absl::Status ComputeExpansions(int32_t d, const GrammarLimits& limits, Grammar* g, size_t* visited) {
  auto pure_accept = [&](int32_t n) {
    const GrammarNode& x = g->nodes[n];
    return x.accept && x.edge_begin == x.edge_end && x.call_begin == x.call_end;
  };
  std::set<std::pair<int32_t, std::vector<int32_t>>> seen;
  std::vector<std::pair<int32_t, std::vector<int32_t>>> todo = {{d, {}}};
  GrammarNode& node = g->nodes[d];
  node.exp_begin = static_cast<uint32_t>(g->expansions.size());
  while (!todo.empty()) {
    auto item = std::move(todo.back());
    todo.pop_back();
    if (!seen.insert(item).second) continue;
    if (++*visited > static_cast<size_t>(limits.max_expansion_entries)) {
      return absl::InvalidArgumentError("grammar too large: too many ways to expand its rules");
    }
    const auto& [m, chain] = item;
    const GrammarNode& x = g->nodes[m];
    if (x.edge_begin != x.edge_end) {
      if (g->expansions.size() >= static_cast<size_t>(limits.max_expansion_entries)) {
        return absl::InvalidArgumentError("grammar too large: too many ways to expand its rules");
      }
      Expansion e;
      e.top = m;
      e.chain_begin = static_cast<uint32_t>(g->chains.size());
      g->chains.insert(g->chains.end(), chain.begin(), chain.end());
      e.chain_end = static_cast<uint32_t>(g->chains.size());
      g->expansions.push_back(e);
    }
    for (uint32_t k = x.call_begin; k < x.call_end; ++k) {
      const CallEdge c = g->calls[k];
      std::vector<int32_t> next = chain;
      if (!pure_accept(c.ret)) {
        if (std::find(chain.begin(), chain.end(), c.ret) != chain.end()) {
          return absl::InvalidArgumentError(absl::StrCat("grammar: left recursion through rule '",
                                                         g->rules[c.rule].name, "'"));
        }
        next.push_back(c.ret);
      }
      todo.emplace_back(g->rules[c.rule].start, std::move(next));
    }
    if (x.accept) {
      if (chain.empty()) {
        g->nodes[d].pops = true;
      } else {
        std::vector<int32_t> rest(chain.begin(), chain.end() - 1);
        todo.emplace_back(chain.back(), std::move(rest));
      }
    }
  }
  g->nodes[d].exp_end = static_cast<uint32_t>(g->expansions.size());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Grammar>> CompileGbnf(std::string_view gbnf, const GrammarLimits& limits) {
  auto ast = ParseGbnfText(gbnf, limits);
  if (!ast.ok()) return ast.status();
  auto nfa_or = BuildNfa(*ast, limits);
  if (!nfa_or.ok()) return nfa_or.status();
  Nfa& nfa = *nfa_or;
  RWKVX_RETURN_IF_ERROR(PruneUnproductive(&nfa));
  RWKVX_RETURN_IF_ERROR(CheckLeftRecursion(nfa));
  RWKVX_RETURN_IF_ERROR(InlineSmallRules(limits, &nfa));

  // Determinize the rules still reachable; the root becomes rule 0.
  const std::vector<bool> reachable = ReachableRules(nfa);
  std::vector<int32_t> order = {nfa.root};
  for (int32_t r = 0; r < static_cast<int32_t>(nfa.rules.size()); ++r) {
    if (reachable[r] && r != nfa.root) order.push_back(r);
  }
  std::vector<int32_t> new_index(nfa.rules.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) new_index[order[i]] = static_cast<int32_t>(i);
  auto g = std::make_shared<Grammar>();
  g->root = 0;
  int total = 0;
  size_t total_members = 0, steps = 0;
  for (int32_t r : order) {
    auto dfa = Determinize(nfa.rules[r], limits, &total, &total_members, &steps);
    if (!dfa.ok()) return dfa.status();
    const int32_t base = static_cast<int32_t>(g->nodes.size());
    GrammarRule rule;
    rule.name = nfa.rules[r].name;
    rule.start = base;
    rule.first_node = base;
    rule.num_nodes = static_cast<int32_t>(dfa->nodes.size());
    const int32_t rule_id = static_cast<int32_t>(g->rules.size());
    g->rules.push_back(rule);
    for (const auto& dn : dfa->nodes) {
      GrammarNode n;
      n.rule = rule_id;
      n.accept = dn.accept;
      n.edge_begin = static_cast<uint32_t>(g->edges.size());
      for (ByteEdge e : dn.bytes) {
        e.to += base;
        g->edges.push_back(e);
      }
      n.edge_end = static_cast<uint32_t>(g->edges.size());
      n.call_begin = static_cast<uint32_t>(g->calls.size());
      for (CallEdge c : dn.calls) g->calls.push_back({new_index[c.rule], c.ret + base});
      n.call_end = static_cast<uint32_t>(g->calls.size());
      g->nodes.push_back(n);
    }
  }
  size_t visited = 0;
  for (int32_t d = 0; d < static_cast<int32_t>(g->nodes.size()); ++d) {
    RWKVX_RETURN_IF_ERROR(ComputeExpansions(d, limits, g.get(), &visited));
  }
  ComputeRuleKeys(g.get());
  return std::shared_ptr<const Grammar>(std::move(g));
}

std::string Grammar::DebugString() const {
  std::string s;
  for (size_t r = 0; r < rules.size(); ++r) {
    const GrammarRule& rule = rules[r];
    absl::StrAppendFormat(&s, "rule %d '%s' start %d\n", r, rule.name, rule.start);
    for (int32_t i = rule.first_node; i < rule.first_node + rule.num_nodes; ++i) {
      const GrammarNode& n = nodes[i];
      absl::StrAppendFormat(&s, "  %d%s:", i, n.accept ? " (accept)" : "");
      for (uint32_t k = n.edge_begin; k < n.edge_end; ++k) {
        absl::StrAppendFormat(&s, " [%02x-%02x]->%d", edges[k].lo, edges[k].hi, edges[k].to);
      }
      for (uint32_t k = n.call_begin; k < n.call_end; ++k) {
        absl::StrAppendFormat(&s, " call '%s'->%d", rules[calls[k].rule].name, calls[k].ret);
      }
      s += "\n";
    }
  }
  return s;
}

}  // namespace rwkvx::grammar
