// GBNF text -> GbnfAst (gbnf_ast.h). A recursive-descent parser with bounded nesting;
// every error names the line and column.
#include <algorithm>
#include <cstring>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/sampling/grammar/gbnf_ast.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/utf8.h"

namespace rwkvx::grammar {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Parser {
 public:
  Parser(std::string_view text, const GrammarLimits& limits) : t_(text), limits_(limits) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < t_.size(); ++i) {
      if (t_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<GbnfAst> Parse() {
    if (t_.size() > limits_.max_text_bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "grammar: %d bytes is more than the limit of %d", t_.size(), limits_.max_text_bytes));
    }
    GbnfAst ast;
    SkipSpace(true);
    while (p_ < t_.size()) {
      if (static_cast<int>(ast.rules.size()) >= limits_.max_rules) {
        return Error(p_, absl::StrCat("more than ", limits_.max_rules, " rules"));
      }
      GbnfRule rule;
      RWKVX_RETURN_IF_ERROR(ParseRule(&rule));
      ast.rules.push_back(std::move(rule));
      SkipSpace(true);
    }
    RWKVX_RETURN_IF_ERROR(Resolve(&ast));
    return ast;
  }

 private:
  absl::Status Error(size_t pos, std::string_view what) const {
    int line = 0, col = 0;
    LineCol(pos, &line, &col);
    return absl::InvalidArgumentError(absl::StrFormat("grammar: line %d, column %d: %s", line, col, what));
  }
  void LineCol(size_t pos, int* line, int* col) const {
    // line_starts_[i] = offset of line i + 1's first byte.
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    *line = static_cast<int>(it - line_starts_.begin());
    *col = static_cast<int>(pos - *(it - 1)) + 1;
  }

  bool AtEnd() const { return p_ >= t_.size(); }
  char Peek(size_t ahead = 0) const { return p_ + ahead < t_.size() ? t_[p_ + ahead] : '\0'; }

  // Spaces, tabs, carriage returns and # comments; newlines too when newline_ok.
  void SkipSpace(bool newline_ok) {
    while (!AtEnd()) {
      const char c = t_[p_];
      if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n')) {
        ++p_;
      } else if (c == '#') {
        while (!AtEnd() && t_[p_] != '\n') ++p_;
      } else {
        break;
      }
    }
  }

  absl::Status ParseRule(GbnfRule* rule) {
    const size_t start = p_;
    while (!AtEnd() && IsNameChar(t_[p_])) ++p_;
    if (p_ == start) return Error(p_, absl::StrCat("expected a rule name, found ", Describe(p_)));
    rule->name = std::string(t_.substr(start, p_ - start));
    LineCol(start, &rule->line, &rule->column);
    SkipSpace(false);
    if (t_.substr(p_, 3) != "::=") {
      return Error(p_, absl::StrCat("expected '::=' after rule name '", rule->name, "', found ", Describe(p_)));
    }
    p_ += 3;
    SkipSpace(true);
    RWKVX_RETURN_IF_ERROR(ParseAlternates(0, &rule->body));
    SkipSpace(false);
    if (!AtEnd() && t_[p_] != '\n') {
      return Error(p_, absl::StrCat("expected the end of rule '", rule->name, "', found ", Describe(p_)));
    }
    return absl::OkStatus();
  }

  std::string Describe(size_t pos) const {
    if (pos >= t_.size()) return "the end of the text";
    const unsigned char c = static_cast<unsigned char>(t_[pos]);
    if (c == '\n') return "a newline";
    if (c >= 0x21 && c < 0x7F) return absl::StrCat("'", std::string(1, static_cast<char>(c)), "'");
    return absl::StrFormat("byte 0x%02x", c);
  }

  // depth 0: a rule's top level (a newline ends it unless the next line starts with |).
  absl::Status ParseAlternates(int depth, GbnfExpr* out) {
    out->kind = GbnfExpr::Kind::kAlt;
    LineCol(p_, &out->line, &out->column);
    while (true) {
      GbnfExpr seq;
      RWKVX_RETURN_IF_ERROR(ParseSequence(depth, &seq));
      out->children.push_back(std::move(seq));
      if (Peek() == '|') {
        ++p_;
        SkipSpace(true);
        continue;
      }
      if (depth == 0 && Peek() == '\n') {
        const size_t save = p_;
        SkipSpace(true);
        if (Peek() == '|') {
          ++p_;
          SkipSpace(true);
          continue;
        }
        p_ = save;
      }
      return absl::OkStatus();
    }
  }

  absl::Status ParseSequence(int depth, GbnfExpr* out) {
    out->kind = GbnfExpr::Kind::kSeq;
    LineCol(p_, &out->line, &out->column);
    const bool nested = depth > 0;
    while (true) {
      SkipSpace(nested);
      if (AtEnd()) return absl::OkStatus();
      const char c = t_[p_];
      if (c == '|' || c == ')' || c == '\n') return absl::OkStatus();
      GbnfExpr item;
      LineCol(p_, &item.line, &item.column);
      if (c == '"') {
        RWKVX_RETURN_IF_ERROR(ParseLiteral(&item));
      } else if (c == '[') {
        RWKVX_RETURN_IF_ERROR(ParseClass(&item));
      } else if (c == '.') {
        ++p_;
        item.kind = GbnfExpr::Kind::kClass;
        item.negated = true;  // [^] = every code point
      } else if (c == '(') {
        if (depth + 1 > limits_.max_nesting) {
          return Error(p_, absl::StrCat("groups nested deeper than ", limits_.max_nesting));
        }
        const size_t open = p_++;
        SkipSpace(true);
        RWKVX_RETURN_IF_ERROR(ParseAlternates(depth + 1, &item));
        SkipSpace(true);
        if (Peek() != ')') return Error(open, "unclosed '(' (expected ')')");
        ++p_;
      } else if (IsNameChar(c)) {
        const size_t start = p_;
        while (!AtEnd() && IsNameChar(t_[p_])) ++p_;
        item.kind = GbnfExpr::Kind::kRef;
        item.name = std::string(t_.substr(start, p_ - start));
        size_t q = p_;
        while (q < t_.size() && (t_[q] == ' ' || t_[q] == '\t')) ++q;
        if (t_.substr(q, 3) == "::=") {
          return Error(start, absl::StrCat("rule '", item.name,
                                           "' starts inside another rule's body (a missing ')' or newline?)"));
        }
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        return Error(p_, absl::StrCat("repetition '", std::string(1, c), "' has nothing to repeat"));
      } else if (c == '<') {
        return Error(p_, "token references (<...>) are not supported");
      } else {
        return Error(p_, absl::StrCat("unexpected ", Describe(p_)));
      }
      RWKVX_RETURN_IF_ERROR(ParsePostfix(nested, &item));
      out->children.push_back(std::move(item));
    }
  }

  absl::Status ParsePostfix(bool nested, GbnfExpr* item) {
    for (int ops = 0;; ++ops) {
      if (ops > limits_.max_nesting) {
        return Error(p_, absl::StrCat("more than ", limits_.max_nesting, " repetition operators in a row"));
      }
      const size_t save = p_;
      SkipSpace(nested);
      const char c = Peek();
      int lo = 0, hi = -1;
      if (c == '*') {
        ++p_;
      } else if (c == '+') {
        ++p_;
        lo = 1;
      } else if (c == '?') {
        ++p_;
        hi = 1;
      } else if (c == '{') {
        RWKVX_RETURN_IF_ERROR(ParseBraces(&lo, &hi));
      } else {
        p_ = save;
        return absl::OkStatus();
      }
      GbnfExpr rep;
      rep.kind = GbnfExpr::Kind::kRepeat;
      rep.line = item->line;
      rep.column = item->column;
      rep.min = lo;
      rep.max = hi;
      rep.children.push_back(std::move(*item));
      *item = std::move(rep);
    }
  }

  absl::Status ParseBraces(int* lo, int* hi) {
    const size_t open = p_++;
    auto number = [&](int* v) -> absl::StatusOr<bool> {
      SkipSpace(false);
      if (!(Peek() >= '0' && Peek() <= '9')) return false;
      long long n = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        n = n * 10 + (t_[p_++] - '0');
        if (n > limits_.max_repeat) {
          return Error(open, absl::StrCat("repetition count above the limit of ", limits_.max_repeat));
        }
      }
      *v = static_cast<int>(n);
      return true;
    };
    auto has_lo = number(lo);
    if (!has_lo.ok()) return has_lo.status();
    SkipSpace(false);
    if (Peek() == ',') {
      ++p_;
      auto has_hi = number(hi);
      if (!has_hi.ok()) return has_hi.status();
      if (!*has_hi) *hi = -1;
      if (!*has_lo) *lo = 0;
      if (!*has_lo && !*has_hi) return Error(open, "'{,}' needs a bound");
    } else {
      if (!*has_lo) return Error(open, "expected a count in '{...}'");
      *hi = *lo;
    }
    SkipSpace(false);
    if (Peek() != '}') return Error(open, "unclosed '{' (expected '}')");
    ++p_;
    if (*hi >= 0 && *hi < *lo) return Error(open, absl::StrCat("repetition {", *lo, ",", *hi, "}: max below min"));
    return absl::OkStatus();
  }

  // One code point of a literal or class, escapes included. `in_class`: "]" ends it.
  absl::StatusOr<uint32_t> ParseChar() {
    const size_t start = p_;
    const unsigned char c = static_cast<unsigned char>(t_[p_]);
    if (c == '\\') {
      if (p_ + 1 >= t_.size()) return Error(start, "'\\' at the end of the text");
      const char e = t_[p_ + 1];
      p_ += 2;
      int digits = 0;
      switch (e) {
        case 'n': return 0x0A;
        case 'r': return 0x0D;
        case 't': return 0x09;
        case 'f': return 0x0C;
        case 'b': return 0x08;
        case 'v': return 0x0B;
        case '0': return 0x00;
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': case '.':
          return static_cast<uint32_t>(e);
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
          return Error(start, absl::StrCat("unknown escape '\\", std::string(1, e), "'"));
      }
      uint32_t v = 0;
      for (int i = 0; i < digits; ++i) {
        const int h = HexValue(Peek());
        if (h < 0) return Error(start, absl::StrCat("'\\", std::string(1, e), "' needs ", digits, " hex digits"));
        v = v * 16 + h;
        ++p_;
      }
      if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        return Error(start, absl::StrFormat("U+%X is not a Unicode scalar value", v));
      }
      return v;
    }
    // A UTF-8 encoded character of the grammar text itself.
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || p_ + len > t_.size()) return Error(start, "invalid UTF-8 in the grammar text");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; ++i) {
      const unsigned char d = static_cast<unsigned char>(t_[p_ + i]);
      if ((d & 0xC0) != 0x80) return Error(start, "invalid UTF-8 in the grammar text");
      v = (v << 6) | (d & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < kMin[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
      return Error(start, "invalid UTF-8 in the grammar text");
    }
    p_ += len;
    return v;
  }

  absl::Status ParseLiteral(GbnfExpr* item) {
    const size_t open = p_++;
    item->kind = GbnfExpr::Kind::kBytes;
    while (true) {
      if (AtEnd()) return Error(open, "unterminated string literal");
      if (t_[p_] == '"') {
        ++p_;
        return absl::OkStatus();
      }
      auto cp = ParseChar();
      if (!cp.ok()) return cp.status();
      AppendUtf8(static_cast<char32_t>(*cp), &item->bytes);
    }
  }

  absl::Status ParseClass(GbnfExpr* item) {
    const size_t open = p_++;
    item->kind = GbnfExpr::Kind::kClass;
    if (Peek() == '^') {
      item->negated = true;
      ++p_;
    }
    while (true) {
      if (AtEnd()) return Error(open, "unterminated character class (expected ']')");
      if (t_[p_] == ']') {
        ++p_;
        return absl::OkStatus();
      }
      const size_t at = p_;
      auto lo = ParseChar();
      if (!lo.ok()) return lo.status();
      uint32_t hi = *lo;
      if (Peek() == '-' && Peek(1) != ']' && p_ + 1 < t_.size()) {
        ++p_;
        auto h = ParseChar();
        if (!h.ok()) return h.status();
        hi = *h;
        if (hi < *lo) return Error(at, absl::StrFormat("range U+%X-U+%X is backwards", *lo, hi));
      }
      item->ranges.emplace_back(*lo, hi);
    }
  }

  absl::Status ResolveExpr(const std::map<std::string, int32_t>& names, GbnfExpr* e) {
    if (e->kind == GbnfExpr::Kind::kRef) {
      auto it = names.find(e->name);
      if (it == names.end()) {
        return absl::InvalidArgumentError(absl::StrFormat("grammar: line %d, column %d: undefined rule '%s'",
                                                          e->line, e->column, e->name));
      }
      e->rule = it->second;
    }
    for (auto& c : e->children) RWKVX_RETURN_IF_ERROR(ResolveExpr(names, &c));
    return absl::OkStatus();
  }

  absl::Status Resolve(GbnfAst* ast) {
    std::map<std::string, int32_t> names;
    for (size_t i = 0; i < ast->rules.size(); ++i) {
      const GbnfRule& r = ast->rules[i];
      if (!names.emplace(r.name, static_cast<int32_t>(i)).second) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "grammar: line %d, column %d: rule '%s' is defined twice", r.line, r.column, r.name));
      }
    }
    auto root = names.find("root");
    if (root == names.end()) return absl::InvalidArgumentError("grammar: no rule named 'root'");
    ast->root = root->second;
    for (auto& r : ast->rules) RWKVX_RETURN_IF_ERROR(ResolveExpr(names, &r.body));
    return absl::OkStatus();
  }

  std::string_view t_;
  const GrammarLimits& limits_;
  size_t p_ = 0;
  std::vector<size_t> line_starts_;
};

}  // namespace

absl::StatusOr<GbnfAst> ParseGbnfText(std::string_view text, const GrammarLimits& limits) {
  return Parser(text, limits).Parse();
}

}  // namespace rwkvx::grammar
