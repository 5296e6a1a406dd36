// GbnfAst -> Nfa (nfa.h): Thompson construction per rule, code point classes as UTF-8
// byte-range sequences, repetitions unrolled (bounded by GrammarLimits).
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/nfa.h"
#include "engine/tokenizer/utf8.h"

namespace rwkvx::grammar {

CodepointRanges NormalizeClass(const CodepointRanges& ranges, bool negated) {
  CodepointRanges r = ranges;
  std::sort(r.begin(), r.end());
  CodepointRanges merged;
  for (const auto& [lo, hi] : r) {
    if (!merged.empty() && lo <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, hi);
    } else {
      merged.emplace_back(lo, hi);
    }
  }
  if (negated) {
    CodepointRanges comp;
    uint32_t next = 0;
    for (const auto& [lo, hi] : merged) {
      if (lo > next) comp.emplace_back(next, lo - 1);
      next = hi + 1;
    }
    if (next <= 0x10FFFF) comp.emplace_back(next, 0x10FFFF);
    merged = std::move(comp);
  }
  CodepointRanges out;  // without surrogates, clipped to U+10FFFF
  for (auto [lo, hi] : merged) {
    if (lo > 0x10FFFF) continue;
    hi = std::min<uint32_t>(hi, 0x10FFFF);
    if (hi < 0xD800 || lo > 0xDFFF) {
      out.emplace_back(lo, hi);
      continue;
    }
    if (lo < 0xD800) out.emplace_back(lo, 0xD7FF);
    if (hi > 0xDFFF) out.emplace_back(0xE000, hi);
  }
  return out;
}

void Utf8Sequences(uint32_t lo, uint32_t hi, std::vector<ByteRangeSeq>* out) {
  if (lo > hi) return;
  static const uint32_t kLengthEnds[] = {0x7F, 0x7FF, 0xFFFF};
  for (uint32_t end : kLengthEnds) {
    if (lo <= end && end < hi) {
      Utf8Sequences(lo, end, out);
      Utf8Sequences(end + 1, hi, out);
      return;
    }
  }
  // Same encoded length. Split until, for every continuation position, either the higher
  // bits agree or the range covers whole blocks (low bits 0...0 to 1...1).
  for (int i = 1; i < 4; ++i) {
    const uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        Utf8Sequences(lo, lo | m, out);
        Utf8Sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        Utf8Sequences(lo, (hi & ~m) - 1, out);
        Utf8Sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  std::string a, b;
  AppendUtf8(static_cast<char32_t>(lo), &a);
  AppendUtf8(static_cast<char32_t>(hi), &b);
  ByteRangeSeq seq;
  for (size_t i = 0; i < a.size(); ++i) seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  out->push_back(std::move(seq));
}

namespace {

class RuleBuilder {
 public:
  RuleBuilder(const GrammarLimits& limits, int* total, NfaRule* rule)
      : limits_(limits), total_(total), rule_(rule) {}

  absl::StatusOr<int32_t> New() {
    if (++*total_ > limits_.max_nfa_states) {
      return absl::InvalidArgumentError(absl::StrCat(
          "grammar too large: more than ", limits_.max_nfa_states,
          " automaton states (repetition counts multiply the size of what they repeat)"));
    }
    rule_->nodes.emplace_back();
    return static_cast<int32_t>(rule_->nodes.size() - 1);
  }

  void Eps(int32_t from, int32_t to) {
    if (from != to) rule_->nodes[from].eps.push_back(to);
  }

  // Builds `e` starting at node `from`; returns the node where it ends. Never adds an edge
  // into `from` (alternatives may share it): loops get a fresh node.
  absl::StatusOr<int32_t> Build(const GbnfExpr& e, int32_t from) {
    switch (e.kind) {
      case GbnfExpr::Kind::kSeq: {
        int32_t cur = from;
        for (const auto& c : e.children) {
          auto r = Build(c, cur);
          if (!r.ok()) return r;
          cur = *r;
        }
        return cur;
      }
      case GbnfExpr::Kind::kAlt: {
        if (e.children.size() == 1) return Build(e.children[0], from);
        auto end = New();
        if (!end.ok()) return end;
        for (const auto& c : e.children) {
          auto r = Build(c, from);
          if (!r.ok()) return r;
          Eps(*r, *end);
        }
        return *end;
      }
      case GbnfExpr::Kind::kBytes: {
        int32_t cur = from;
        for (unsigned char b : e.bytes) {
          auto n = New();
          if (!n.ok()) return n;
          rule_->nodes[cur].bytes.push_back({b, b, *n});
          cur = *n;
        }
        return cur;
      }
      case GbnfExpr::Kind::kClass: {
        auto end = New();
        if (!end.ok()) return end;
        std::vector<ByteRangeSeq> seqs;
        for (const auto& [lo, hi] : NormalizeClass(e.ranges, e.negated)) Utf8Sequences(lo, hi, &seqs);
        for (const auto& seq : seqs) {
          int32_t cur = from;
          for (size_t i = 0; i + 1 < seq.size(); ++i) {
            auto n = New();
            if (!n.ok()) return n;
            rule_->nodes[cur].bytes.push_back({seq[i].first, seq[i].second, *n});
            cur = *n;
          }
          rule_->nodes[cur].bytes.push_back({seq.back().first, seq.back().second, *end});
        }
        return *end;
      }
      case GbnfExpr::Kind::kRef: {
        auto end = New();
        if (!end.ok()) return end;
        rule_->nodes[from].calls.push_back({e.rule, *end});
        return *end;
      }
      case GbnfExpr::Kind::kRepeat:
        return BuildRepeat(e, from);
    }
    return absl::InternalError("grammar: unknown expression kind");
  }

 private:
  absl::StatusOr<int32_t> BuildRepeat(const GbnfExpr& e, int32_t from) {
    const GbnfExpr& body = e.children[0];
    int32_t cur = from;
    for (int i = 0; i < e.min; ++i) {
      auto r = Build(body, cur);
      if (!r.ok()) return r;
      cur = *r;
    }
    if (e.max < 0) {  // a loop on a fresh node
      auto loop = New();
      if (!loop.ok()) return loop;
      Eps(cur, *loop);
      auto r = Build(body, *loop);
      if (!r.ok()) return r;
      Eps(*r, *loop);
      return *loop;
    }
    if (e.max == e.min) return cur;
    auto end = New();
    if (!end.ok()) return end;
    for (int i = e.min; i < e.max; ++i) {
      Eps(cur, *end);
      auto r = Build(body, cur);
      if (!r.ok()) return r;
      cur = *r;
    }
    Eps(cur, *end);
    return *end;
  }

  const GrammarLimits& limits_;
  int* total_;
  NfaRule* rule_;
};

}  // namespace

absl::StatusOr<Nfa> BuildNfa(const GbnfAst& ast, const GrammarLimits& limits) {
  Nfa nfa;
  nfa.root = ast.root;
  int total = 0;
  for (const GbnfRule& r : ast.rules) {
    NfaRule rule;
    rule.name = r.name;
    RuleBuilder b(limits, &total, &rule);
    auto start = b.New();
    if (!start.ok()) return start.status();
    rule.start = *start;
    auto end = b.Build(r.body, *start);
    if (!end.ok()) return end.status();
    rule.nodes[*end].accept = true;
    nfa.rules.push_back(std::move(rule));
  }
  return nfa;
}

}  // namespace rwkvx::grammar
