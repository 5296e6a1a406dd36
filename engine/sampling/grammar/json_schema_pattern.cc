// JSON schema `pattern` (json_schema_compiler.h, PatternGbnf): an ECMA-262 regular
// expression over a string's value, as a GBNF expression over the string's JSON text in
// canonical form (the one spelling json.dumps writes: `"` and `\` and control characters
// escaped, \b \f \n \r \t or \u00xx, every other character raw), so that the decoded value
// is what the expression matched. The common subset: literals and escapes (\d \w \s and
// their negations, \t \n \r \f \v \0, \xHH, \uHHHH, \u{H...}, escaped punctuation),
// classes with ranges and negation, `.` (not a line terminator), groups ((...), (?:...),
// (?<name>...)), alternation, the quantifiers * + ? {m} {m,} {m,n} (lazy forms: the same
// language), and ^ / $ at the ends of the whole pattern or of a top-level alternative. A
// pattern matches anywhere in the value (JSON schema's rule) unless anchored: an
// unanchored side gets any characters. Everything else (backreferences, lookaround, word
// boundaries, anchors inside groups) is an error naming it. Pure functions; any thread.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/sampling/grammar/json_schema_compiler.h"
#include "engine/status_macros.h"

namespace rwkvx::grammar {
namespace {

struct Range {
  uint32_t lo, hi;  // code points, inclusive
};
using CharSet = std::vector<Range>;

constexpr uint32_t kMaxCp = 0x10FFFF;
constexpr int kMaxCount = 1000;  // {m,n} bounds
constexpr int kMaxDepth = 64;    // nested groups

CharSet Normalize(CharSet s) {  // sorted, merged, no surrogates
  CharSet out;
  std::sort(s.begin(), s.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  for (Range r : s) {
    if (r.lo > r.hi) continue;
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  CharSet cut;  // surrogates are not characters
  for (Range r : out) {
    if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      cut.push_back(r);
      continue;
    }
    if (r.lo < 0xD800) cut.push_back({r.lo, 0xD7FF});
    if (r.hi > 0xDFFF) cut.push_back({0xE000, r.hi});
  }
  return cut;
}

CharSet Negate(const CharSet& s) {
  CharSet n = Normalize(s), out;
  uint32_t next = 0;
  for (Range r : n) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCp) out.push_back({next, kMaxCp});
  return Normalize(out);
}

CharSet Digits() { return {{'0', '9'}}; }
CharSet Word() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
CharSet Space() {  // ECMA-262 WhiteSpace and LineTerminator
  return {{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
          {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
}
CharSet Dot() { return Negate({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}); }

std::string Utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

bool NeedsEscape(uint32_t cp) { return cp < 0x20 || cp == '"' || cp == '\\'; }

// The canonical JSON text of one character.
std::string Unit(uint32_t cp) {
  if (!NeedsEscape(cp)) return Utf8(cp);
  const std::string quoted = CanonicalJsonString(std::string(1, static_cast<char>(cp)));
  return quoted.substr(1, quoted.size() - 2);
}

std::string ClassBound(uint32_t cp) {  // one end of a GBNF class range
  if (cp >= 0x20 && cp < 0x7F && cp != ']' && cp != '\\' && cp != '^' && cp != '-' && cp != '[')
    return std::string(1, static_cast<char>(cp));
  return cp <= 0xFFFF ? absl::StrFormat("\\u%04X", cp) : absl::StrFormat("\\U%08X", cp);
}

// GBNF for one character of `set`, as canonical JSON text.
std::string CharSetGbnf(const CharSet& set) {
  std::string cls;
  std::vector<std::string> escaped;
  for (Range r : Normalize(set)) {
    for (uint32_t lo = r.lo; lo <= r.hi;) {  // cut at the characters written escaped
      if (NeedsEscape(lo)) {
        escaped.push_back(GbnfLiteral(Unit(lo)));
        ++lo;
        continue;
      }
      // Up to the next character written escaped (all of them are below 0x5D).
      const uint32_t next = lo < 0x22 ? 0x22 : lo < 0x5C ? 0x5C : kMaxCp + 1;
      const uint32_t hi = std::min(r.hi, next - 1);
      cls += ClassBound(lo);
      if (hi > lo) cls += "-" + ClassBound(hi);
      lo = hi + 1;
    }
  }
  std::vector<std::string> alts;
  if (!cls.empty()) alts.push_back("[" + cls + "]");
  for (auto& e : escaped) alts.push_back(std::move(e));
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) absl::StrAppend(&out, i ? " | " : " ", alts[i]);
  return out + " )";
}

class Parser {
 public:
  // json: characters as canonical JSON string text and JSON schema's "match anywhere";
  // else raw text and a match of the whole text (guided_regex).
  Parser(std::string_view re, bool json) : json_(json) {
    for (size_t i = 0; i < re.size();) {  // the pattern's code points (valid UTF-8: it came from JSON)
      const unsigned char c = static_cast<unsigned char>(re[i]);
      const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
      uint32_t cp = len == 1 ? c : c & (0x7F >> len);
      for (size_t k = 1; k < len && i + k < re.size(); ++k) cp = (cp << 6) | (re[i + k] & 0x3F);
      cps_.push_back(cp);
      i += len;
    }
  }

  // The whole pattern: top-level alternatives, each anchored or padded with any characters
  // (raw text: always the whole text, ^ and $ allowed and redundant).
  absl::StatusOr<std::string> Whole() {
    std::vector<std::string> alts;
    while (true) {
      const bool start = Eat('^') || !json_;
      auto seq = Sequence(0);
      if (!seq.ok()) return seq.status();
      const bool end = Eat('$') || !json_;
      const std::string any = Chars(Negate({})) + "*";
      alts.push_back(absl::StrCat(start ? "" : any + " ", "( ", seq->empty() ? "\"\"" : *seq, " )",
                                  end ? "" : " " + any));
      if (AtEnd()) break;
      at_ = pos_;
      if (!Eat('|')) return Fail(absl::StrCat("unexpected '", Utf8(Peek()), "'"));
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t i = 0; i < alts.size(); ++i) absl::StrAppend(&out, i ? " | " : " ", alts[i]);
    return out + " )";
  }

 private:
  bool AtEnd() const { return pos_ >= cps_.size(); }
  uint32_t Peek(size_t ahead = 0) const { return pos_ + ahead < cps_.size() ? cps_[pos_ + ahead] : 0; }
  bool Eat(uint32_t c) {
    if (AtEnd() || cps_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  absl::Status Fail(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("pattern: ", what, " (at character ", at_ + 1, ")"));
  }

  absl::StatusOr<std::string> Alternation(int depth) {
    std::vector<std::string> alts;
    while (true) {
      auto seq = Sequence(depth);
      if (!seq.ok()) return seq.status();
      alts.push_back(seq->empty() ? "\"\"" : *seq);
      if (!Eat('|')) break;
    }
    if (alts.size() == 1) return "( " + alts[0] + " )";
    std::string out = "(";
    for (size_t i = 0; i < alts.size(); ++i) absl::StrAppend(&out, i ? " | " : " ", alts[i]);
    return out + " )";
  }

  // Atoms with their quantifiers, up to '|', ')' or the end ('$' at the very end of a
  // top-level alternative is left for Whole).
  absl::StatusOr<std::string> Sequence(int depth) {
    std::string out;
    while (!AtEnd() && Peek() != '|' && Peek() != ')') {
      if (Peek() == '$' && depth == 0 && (pos_ + 1 == cps_.size() || Peek(1) == '|')) break;
      auto atom = Atom(depth);
      if (!atom.ok()) return atom.status();
      auto q = Quantified(*atom);
      if (!q.ok()) return q.status();
      absl::StrAppend(&out, out.empty() ? "" : " ", *q);
    }
    return out;
  }

  absl::StatusOr<std::string> Quantified(const std::string& atom) {
    int lo = 1, hi = 1;  // hi < 0: unbounded
    at_ = pos_;
    if (Eat('*')) {
      lo = 0, hi = -1;
    } else if (Eat('+')) {
      lo = 1, hi = -1;
    } else if (Eat('?')) {
      lo = 0, hi = 1;
    } else if (Peek() == '{' && Braces(&lo, &hi)) {
      if (lo > kMaxCount || hi > kMaxCount) return Fail(absl::StrCat("repetition counts above ", kMaxCount, " are not supported"));
      if (hi >= 0 && hi < lo) return Fail("a repetition {m,n} with n < m");
    } else {
      return atom;
    }
    if (atom == "( \"\" )") return atom;  // an empty group repeated is still empty
    Eat('?');  // lazy: the same language
    if (Peek() == '*' || Peek() == '+' || Peek() == '?' || (Peek() == '{' && IsBraces()))
      return Fail("a quantifier after a quantifier (possessive or nested) is not supported");
    if (hi == lo) return lo == 0 ? std::string("\"\"") : lo == 1 ? atom : absl::StrCat(atom, "{", lo, "}");
    if (hi < 0) return lo == 0 ? atom + "*" : lo == 1 ? atom + "+" : absl::StrCat(atom, "{", lo, ",}");
    if (lo == 0 && hi == 1) return atom + "?";
    return absl::StrCat(atom, "{", lo, ",", hi, "}");
  }

  // {m}, {m,} or {m,n} at pos_ (ECMA: a '{' that starts none of them is a literal).
  bool IsBraces() const {
    size_t i = pos_ + 1, digits = 0;
    while (i < cps_.size() && cps_[i] >= '0' && cps_[i] <= '9') ++i, ++digits;
    if (!digits) return false;
    if (i < cps_.size() && cps_[i] == ',') {
      ++i;
      while (i < cps_.size() && cps_[i] >= '0' && cps_[i] <= '9') ++i;
    }
    return i < cps_.size() && cps_[i] == '}';
  }
  bool Braces(int* lo, int* hi) {
    if (!IsBraces()) return false;
    ++pos_;
    auto number = [&]() {
      long long v = 0;
      while (!AtEnd() && Peek() >= '0' && Peek() <= '9') v = std::min<long long>(v * 10 + (cps_[pos_++] - '0'), 1 << 30);
      return static_cast<int>(v);
    };
    *lo = number();
    *hi = *lo;
    if (Eat(',')) *hi = (Peek() >= '0' && Peek() <= '9') ? number() : -1;
    Eat('}');
    return true;
  }

  absl::StatusOr<std::string> Atom(int depth) {
    at_ = pos_;
    const uint32_t c = cps_[pos_++];
    switch (c) {
      case '(': {
        if (depth + 1 > kMaxDepth) return Fail("groups nested deeper than 64");
        if (Eat('?')) {
          if (Eat(':')) {
          } else if (Peek() == '<' && Peek(1) != '=' && Peek(1) != '!') {  // (?<name>...)
            while (!AtEnd() && Peek() != '>') ++pos_;
            if (!Eat('>')) return Fail("unterminated group name");
          } else {
            return Fail("lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not supported");
          }
        }
        auto inner = Alternation(depth + 1);
        if (!inner.ok()) return inner.status();
        if (!Eat(')')) return Fail("missing ')'");
        return *inner;
      }
      case ')':
        return Fail("unbalanced ')'");
      case '[':
        return Class();
      case '.':
        return Chars(Dot());
      case '^':
      case '$':
        return Fail(absl::StrCat("'", Utf8(c), "' is supported only at the start / end of the pattern or of a top-level alternative"));
      case '*':
      case '+':
      case '?':
        return Fail("a quantifier with nothing to repeat");
      case '{':
        if (IsBraces()) return Fail("a quantifier with nothing to repeat");
        return Chars({{c, c}});
      case '\\': {
        CharSet set;
        auto st = Escape(/*in_class=*/false, &set);
        if (!st.ok()) return st;
        return Chars(set);
      }
      default:
        return Chars({{c, c}});
    }
  }

  // After a backslash: the character set it stands for.
  absl::Status Escape(bool in_class, CharSet* out) {
    if (AtEnd()) return Fail("a pattern may not end with '\\'");
    const uint32_t c = cps_[pos_++];
    auto one = [&](uint32_t cp) {
      *out = {{cp, cp}};
      return absl::OkStatus();
    };
    auto hex = [&](int n, uint32_t* v) {
      *v = 0;
      for (int k = 0; k < n; ++k) {
        const uint32_t h = Peek();
        const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return false;
        *v = *v * 16 + d;
        ++pos_;
      }
      return true;
    };
    switch (c) {
      case 'd': *out = Digits(); return absl::OkStatus();
      case 'D': *out = Negate(Digits()); return absl::OkStatus();
      case 'w': *out = Word(); return absl::OkStatus();
      case 'W': *out = Negate(Word()); return absl::OkStatus();
      case 's': *out = Space(); return absl::OkStatus();
      case 'S': *out = Negate(Space()); return absl::OkStatus();
      case 't': return one('\t');
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0': return one(0);
      case 'b':
        if (in_class) return one('\b');
        return Fail("'\\b' (a word boundary) is not supported");
      case 'B': return Fail("'\\B' (not a word boundary) is not supported");
      case 'x': {
        uint32_t v;
        if (!hex(2, &v)) return Fail("'\\x' needs two hex digits");
        return one(v);
      }
      case 'u': {
        uint32_t v;
        if (Eat('{')) {
          v = 0;
          int n = 0;
          while (!AtEnd() && Peek() != '}' && n < 7) {
            uint32_t d;
            if (!hex(1, &d)) return Fail("'\\u{...}' needs hex digits");
            v = v * 16 + d;
            ++n;
          }
          if (!n || !Eat('}') || v > kMaxCp) return Fail("bad '\\u{...}' escape");
          return one(v);
        }
        if (!hex(4, &v)) return Fail("'\\u' needs four hex digits");
        if (v >= 0xD800 && v <= 0xDBFF && Peek() == '\\' && Peek(1) == 'u') {  // a surrogate pair
          const size_t back = pos_;
          pos_ += 2;
          uint32_t lo;
          if (hex(4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) return one(0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00));
          pos_ = back;
        }
        if (v >= 0xD800 && v <= 0xDFFF) return Fail("a lone surrogate '\\u' escape matches no character");
        return one(v);
      }
      case 'c': return Fail("'\\c' control escapes are not supported");
      case 'k': return Fail("named backreferences are not supported");
      case 'p':
      case 'P': return Fail("Unicode property escapes ('\\p{...}') are not supported");
      default:
        if (c >= '1' && c <= '9') return Fail("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return Fail(absl::StrCat("unknown escape '\\", Utf8(c), "'"));
        return one(c);  // escaped punctuation (and any other character): itself
    }
  }

  absl::StatusOr<std::string> Class() {
    const bool negated = Eat('^');
    CharSet set;
    while (true) {
      if (AtEnd()) return Fail("missing ']'");
      if (Eat(']')) break;  // ("[]" matches nothing, "[^]" anything, as in ECMA-262)
      CharSet item;
      auto read = [&](CharSet* s) -> absl::Status {
        at_ = pos_;
        const uint32_t c = cps_[pos_++];
        if (c == '\\') return Escape(/*in_class=*/true, s);
        *s = {{c, c}};
        return absl::OkStatus();
      };
      RWKVX_RETURN_IF_ERROR(read(&item));
      if (Peek() == '-' && Peek(1) != ']' && pos_ + 1 < cps_.size() && item.size() == 1 && item[0].lo == item[0].hi) {
        ++pos_;  // a range a-b
        CharSet end;
        RWKVX_RETURN_IF_ERROR(read(&end));
        if (end.size() != 1 || end[0].lo != end[0].hi) return Fail("a class range may not end in a class escape");
        if (end[0].lo < item[0].lo) return Fail("a class range out of order");
        item = {{item[0].lo, end[0].lo}};
      }
      set.insert(set.end(), item.begin(), item.end());
    }
    if (negated) set = Negate(set);
    set = Normalize(set);
    if (set.empty()) return Fail("a character class that matches no character");
    return Chars(set);
  }

  // One character of `set` as GBNF: JSON text (canonical escapes) or raw UTF-8.
  std::string Chars(const CharSet& set) const {
    if (json_) return CharSetGbnf(set);
    const CharSet n = Normalize(set);
    if (n.size() == 1 && n[0].lo == n[0].hi) return GbnfLiteral(Utf8(n[0].lo));
    std::string cls;
    for (Range r : n) {
      cls += ClassBound(r.lo);
      if (r.hi > r.lo) cls += "-" + ClassBound(r.hi);
    }
    return "[" + cls + "]";
  }

  const bool json_;
  std::vector<uint32_t> cps_;
  size_t pos_ = 0;
  size_t at_ = 0;  // where the construct being read starts (for errors)
};

}  // namespace

absl::StatusOr<std::string> PatternGbnf(std::string_view pattern) {
  if (pattern.size() > 4096) return absl::InvalidArgumentError("pattern: longer than 4096 bytes");
  Parser p(pattern, /*json=*/true);
  auto body = p.Whole();
  if (!body.ok()) return body.status();
  return absl::StrCat("\"\\\"\" ", *body, " \"\\\"\"");
}

absl::StatusOr<std::string> RegexToGbnf(std::string_view regex) {
  if (regex.size() > 4096) return absl::InvalidArgumentError("regex: longer than 4096 bytes");
  Parser p(regex, /*json=*/false);
  auto body = p.Whole();
  if (!body.ok()) return absl::InvalidArgumentError(absl::StrCat("regex", body.status().message().substr(7)));
  return absl::StrCat("root ::= ", *body, "\n");
}

}  // namespace rwkvx::grammar
