// Nfa checks and rewrites (nfa_passes.h).
#include "engine/sampling/grammar/nfa_passes.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rwkvx::grammar {

std::vector<bool> ReachableRules(const Nfa& nfa) {
  std::vector<bool> seen(nfa.rules.size(), false);
  std::vector<int32_t> todo = {nfa.root};
  seen[nfa.root] = true;
  while (!todo.empty()) {
    const int32_t r = todo.back();
    todo.pop_back();
    for (const NfaNode& n : nfa.rules[r].nodes) {
      for (const CallEdge& c : n.calls) {
        if (!seen[c.rule]) {
          seen[c.rule] = true;
          todo.push_back(c.rule);
        }
      }
    }
  }
  return seen;
}

namespace {

// Nodes of `rule` from which its end can be reached, given which rules are productive.
std::vector<bool> CoReachable(const NfaRule& rule, const std::vector<bool>& productive) {
  const size_t n = rule.nodes.size();
  std::vector<std::vector<int32_t>> preds(n);
  for (size_t i = 0; i < n; ++i) {
    const NfaNode& node = rule.nodes[i];
    for (const auto& e : node.bytes) preds[e.to].push_back(static_cast<int32_t>(i));
    for (int32_t t : node.eps) preds[t].push_back(static_cast<int32_t>(i));
    for (const auto& c : node.calls) {
      if (productive[c.rule]) preds[c.ret].push_back(static_cast<int32_t>(i));
    }
  }
  std::vector<bool> ok(n, false);
  std::vector<int32_t> todo;
  for (size_t i = 0; i < n; ++i) {
    if (rule.nodes[i].accept) {
      ok[i] = true;
      todo.push_back(static_cast<int32_t>(i));
    }
  }
  while (!todo.empty()) {
    const int32_t v = todo.back();
    todo.pop_back();
    for (int32_t p : preds[v]) {
      if (!ok[p]) {
        ok[p] = true;
        todo.push_back(p);
      }
    }
  }
  return ok;
}

// Visits the nodes of `rule` reachable from its start without consuming input: through
// epsilon edges, and past calls of rules in `nullable`. on_node(node) may return true to
// stop early.
template <typename F>
void ExploreWithoutInput(const NfaRule& rule, const std::vector<bool>& nullable, F on_node) {
  std::vector<bool> seen(rule.nodes.size(), false);
  std::vector<int32_t> todo = {rule.start};
  seen[rule.start] = true;
  auto visit = [&](int32_t t) {
    if (!seen[t]) {
      seen[t] = true;
      todo.push_back(t);
    }
  };
  while (!todo.empty()) {
    const NfaNode& node = rule.nodes[todo.back()];
    todo.pop_back();
    if (on_node(node)) return;
    for (int32_t t : node.eps) visit(t);
    for (const auto& c : node.calls) {
      if (nullable[c.rule]) visit(c.ret);
    }
  }
}

// A property of rules that holds once it holds for enough of their callees (`holds(r)`
// reads the current answers): iterated to a fixpoint one call-graph component at a time,
// callees first, so chains of rules cost one pass.
template <typename F>
std::vector<bool> RuleFixpoint(const Nfa& nfa, F holds) {
  std::vector<bool> yes(nfa.rules.size(), false);
  for (const auto& scc : CallGraphSccs(nfa)) {
    for (bool changed = true; changed;) {
      changed = false;
      for (int32_t r : scc) {
        if (!yes[r] && holds(r, yes)) yes[r] = changed = true;
      }
    }
  }
  return yes;
}

// Rules that can match the empty string.
std::vector<bool> NullableRules(const Nfa& nfa) {
  return RuleFixpoint(nfa, [&](int32_t r, const std::vector<bool>& nullable) {
    bool found = false;
    ExploreWithoutInput(nfa.rules[r], nullable, [&](const NfaNode& node) { return found = node.accept; });
    return found;
  });
}

}  // namespace

absl::Status PruneUnproductive(Nfa* nfa) {
  const std::vector<bool> productive = RuleFixpoint(*nfa, [&](int32_t r, const std::vector<bool>& known) -> bool {
    return CoReachable(nfa->rules[r], known)[nfa->rules[r].start];
  });
  if (!productive[nfa->root]) {
    return absl::InvalidArgumentError("grammar: the root rule matches no text at all");
  }
  for (size_t r = 0; r < nfa->rules.size(); ++r) {
    NfaRule& rule = nfa->rules[r];
    if (!productive[r]) {  // never called once callers are pruned; keep it trivially empty
      rule.nodes.assign(1, NfaNode());
      rule.start = 0;
      continue;
    }
    const std::vector<bool> ok = CoReachable(rule, productive);
    for (NfaNode& node : rule.nodes) {
      std::erase_if(node.bytes, [&](const ByteEdge& e) { return !ok[e.to]; });
      std::erase_if(node.eps, [&](int32_t t) { return !ok[t]; });
      std::erase_if(node.calls, [&](const CallEdge& c) { return !productive[c.rule] || !ok[c.ret]; });
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLeftRecursion(const Nfa& nfa) {
  const std::vector<bool> nullable = NullableRules(nfa);
  const size_t nr = nfa.rules.size();
  // left[r]: rules called by r before it consumes any input.
  std::vector<std::vector<int32_t>> left(nr);
  for (size_t r = 0; r < nr; ++r) {
    std::vector<bool> called(nr, false);
    ExploreWithoutInput(nfa.rules[r], nullable, [&](const NfaNode& node) {
      for (const auto& c : node.calls) {
        if (!called[c.rule]) {
          called[c.rule] = true;
          left[r].push_back(c.rule);
        }
      }
      return false;
    });
  }
  // A cycle in `left`, found by depth-first search (iterative: grammars can be deep).
  std::vector<int> color(nr, 0);  // 0 new, 1 on the path, 2 done
  for (size_t s = 0; s < nr; ++s) {
    if (color[s]) continue;
    std::vector<std::pair<int32_t, size_t>> path = {{static_cast<int32_t>(s), 0}};
    color[s] = 1;
    while (!path.empty()) {
      auto& [r, i] = path.back();
      if (i == left[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const int32_t t = left[r][i++];
      if (color[t] == 1) {
        std::vector<std::string> names;
        bool on = false;
        for (const auto& [p, unused] : path) {
          if (p == t) on = true;
          if (on) names.push_back(nfa.rules[p].name);
        }
        names.push_back(nfa.rules[t].name);
        return absl::InvalidArgumentError(absl::StrCat(
            "grammar: left recursion is not supported: rule '", nfa.rules[t].name,
            "' can reach itself without consuming input (", absl::StrJoin(names, " -> "), ")"));
      }
      if (color[t] == 0) {
        color[t] = 1;
        path.emplace_back(t, 0);
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::vector<int32_t>> StronglyConnected(const std::vector<std::vector<int32_t>>& succ) {
  // Tarjan's algorithm, iterative. Components come out successors first.
  const int32_t nr = static_cast<int32_t>(succ.size());
  std::vector<int32_t> index(nr, -1), low(nr, 0), stack;
  std::vector<bool> on_stack(nr, false);
  std::vector<std::vector<int32_t>> sccs;
  int32_t next = 0;
  for (int32_t s = 0; s < nr; ++s) {
    if (index[s] >= 0) continue;
    std::vector<std::pair<int32_t, size_t>> work = {{s, 0}};
    index[s] = low[s] = next++;
    stack.push_back(s);
    on_stack[s] = true;
    while (!work.empty()) {
      const int32_t v = work.back().first;
      size_t& i = work.back().second;
      if (i < succ[v].size()) {
        const int32_t w = succ[v][i++];
        if (index[w] < 0) {
          index[w] = low[w] = next++;
          stack.push_back(w);
          on_stack[w] = true;
          work.emplace_back(w, 0);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
        continue;
      }
      if (low[v] == index[v]) {
        std::vector<int32_t> scc;
        int32_t w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = false;
          scc.push_back(w);
        } while (w != v);
        sccs.push_back(std::move(scc));
      }
      work.pop_back();
      if (!work.empty()) low[work.back().first] = std::min(low[work.back().first], low[v]);
    }
  }
  return sccs;
}

std::vector<std::vector<int32_t>> CallGraphSccs(const Nfa& nfa) {
  std::vector<std::vector<int32_t>> succ(nfa.rules.size());
  for (size_t r = 0; r < nfa.rules.size(); ++r) {
    for (const NfaNode& n : nfa.rules[r].nodes) {
      for (const auto& c : n.calls) succ[r].push_back(c.rule);
    }
    std::sort(succ[r].begin(), succ[r].end());
    succ[r].erase(std::unique(succ[r].begin(), succ[r].end()), succ[r].end());
  }
  return StronglyConnected(succ);
}

absl::Status InlineSmallRules(const GrammarLimits& limits, Nfa* nfa) {
  const size_t nr = nfa->rules.size();
  const std::vector<bool> reachable = ReachableRules(*nfa);
  std::vector<int> call_sites(nr, 0);
  for (size_t r = 0; r < nr; ++r) {
    if (!reachable[r]) continue;
    for (const NfaNode& n : nfa->rules[r].nodes) {
      for (const auto& c : n.calls) ++call_sites[c.rule];
    }
  }
  std::vector<bool> recursive(nr, false);
  const auto sccs = CallGraphSccs(*nfa);
  for (const auto& scc : sccs) {
    bool self = false;
    for (const NfaNode& n : nfa->rules[scc[0]].nodes) {
      for (const auto& c : n.calls) self |= c.rule == scc[0];
    }
    if (scc.size() > 1 || self) {
      for (int32_t r : scc) recursive[r] = true;
    }
  }
  size_t total = 0;
  for (const auto& r : nfa->rules) total += r.nodes.size();
  for (const auto& scc : sccs) {  // callees first: a callee is final when its callers inline it
    for (int32_t q : scc) {
      if (!reachable[q]) continue;
      NfaRule& rule = nfa->rules[q];
      for (size_t i = 0; i < rule.nodes.size(); ++i) {
        for (size_t k = 0; k < rule.nodes[i].calls.size();) {
          const CallEdge c = rule.nodes[i].calls[k];
          const NfaRule& callee = nfa->rules[c.rule];
          const bool small = static_cast<int>(callee.nodes.size()) <= limits.inline_max_states;
          if (recursive[c.rule] || !(small || call_sites[c.rule] == 1) ||
              total + callee.nodes.size() > static_cast<size_t>(limits.max_nfa_states)) {
            ++k;
            continue;
          }
          const int32_t base = static_cast<int32_t>(rule.nodes.size());
          for (const NfaNode& src : callee.nodes) {  // copy, shifting indices
            NfaNode n = src;
            for (auto& e : n.bytes) e.to += base;
            for (auto& t : n.eps) t += base;
            for (auto& cc : n.calls) cc.ret += base;
            if (n.accept) {
              n.accept = false;
              n.eps.push_back(c.ret);
            }
            rule.nodes.push_back(std::move(n));
          }
          total += callee.nodes.size();
          rule.nodes[i].eps.push_back(base + callee.start);
          rule.nodes[i].calls.erase(rule.nodes[i].calls.begin() + k);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::grammar
