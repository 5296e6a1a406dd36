// Decimal ranges for `number` bounds (json_schema_compiler.h). A number is written
// [-]I[.F]: I is compared as an integer (exact digit grammars, IntegerRangeGbnf) and, at
// a bound's own integer part, the fraction digits F are compared with the bound's as
// decimal fractions, digit by digit.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/sampling/grammar/json_schema_compiler.h"

namespace rwkvx::grammar {
namespace {

// A condition on the fraction digits s (value 0.s): 0.s >= 0.digits (lower) or <= (upper),
// strictly when !inclusive.
struct FracBound {
  std::string digits;
  bool inclusive = true;
};
using OptFrac = std::optional<FracBound>;

OptFrac Normalize(OptFrac lo) {  // ">= 0" holds for every fraction
  if (lo && lo->digits.empty() && lo->inclusive) return std::nullopt;
  return lo;
}

bool EmptyOk(const OptFrac& lo, const OptFrac& hi) {  // the empty fraction, value 0
  const bool lo_ok = !lo || (lo->digits.empty() && lo->inclusive);
  const bool hi_ok = !hi || !hi->digits.empty() || hi->inclusive;
  return lo_ok && hi_ok;
}

bool Same(const OptFrac& a, const OptFrac& b) {
  return a.has_value() == b.has_value() && (!a || (a->digits == b->digits && a->inclusive == b->inclusive));
}

// Non-empty digit strings s within the bounds, as GBNF; "" if there are none.
std::string NonEmptyFraction(OptFrac lo, const OptFrac& hi) {
  lo = Normalize(lo);
  const bool lo_zero = lo && lo->digits.empty();  // "> 0"
  const bool hi_zero = hi && hi->digits.empty();  // "<= 0" or "< 0"
  if (!lo && !hi) return "[0-9]+";
  if (lo_zero && !hi) return "[0-9]* [1-9] [0-9]*";
  if (hi_zero) return !lo && hi->inclusive ? "\"0\"+" : "";
  std::vector<std::string> alts;
  for (int c = 0; c <= 9;) {
    // The bounds after the first digit c (a dead side ends the digit).
    auto step = [](const OptFrac& b, int d, bool lower, bool* dead) -> OptFrac {
      if (!b) return std::nullopt;
      const int bd = b->digits.empty() ? 0 : b->digits[0] - '0';
      if (d == bd) return FracBound{b->digits.empty() ? "" : b->digits.substr(1), b->inclusive};
      if ((d > bd) == lower) return std::nullopt;
      *dead = true;
      return std::nullopt;
    };
    bool dead = false;
    const OptFrac nlo = Normalize(step(lo, c, true, &dead)), nhi = step(hi, c, false, &dead);
    int end = c + 1;  // digits with the same next state join one class
    while (end <= 9) {
      bool d2 = false;
      const OptFrac l2 = Normalize(step(lo, end, true, &d2)), h2 = step(hi, end, false, &d2);
      if (d2 != dead || !Same(l2, nlo) || !Same(h2, nhi)) break;
      ++end;
    }
    if (!dead) {
      const std::string more = NonEmptyFraction(nlo, nhi);
      const bool empty = EmptyOk(nlo, nhi);
      if (empty || !more.empty()) {
        const std::string cls = end - c == 1 ? absl::StrCat("\"", c, "\"") : absl::StrCat("[", c, "-", end - 1, "]");
        const std::string rest = more.empty() ? "" : empty ? absl::StrCat(" ( ", more, " )?") : " " + more;
        alts.push_back(cls + rest);
      }
    }
    c = end;
  }
  if (alts.empty()) return "";
  return alts.size() == 1 ? alts[0] : absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
}

// The optional fraction part ("." digits) within the bounds; nullopt if impossible.
std::optional<std::string> Fraction(const OptFrac& lo, const OptFrac& hi) {
  const std::string ne = NonEmptyFraction(lo, hi);
  const bool empty = EmptyOk(Normalize(lo), hi);
  if (ne.empty()) return empty ? std::optional<std::string>("") : std::nullopt;
  return empty ? absl::StrCat("( \".\" ", ne, " )?") : absl::StrCat("\".\" ", ne);
}

// Non-negative numbers between magnitudes lo and hi (absent: unbounded).
std::string NonNegative(const DecimalBound& lo, const std::optional<DecimalBound>& hi) {
  std::vector<std::string> alts;
  auto part = [&](const std::string& int_expr, const OptFrac& flo, const OptFrac& fhi) {
    const auto f = Fraction(flo, fhi);
    if (f) alts.push_back(f->empty() ? int_expr : absl::StrCat(int_expr, " ", *f));
  };
  const FracBound flo{lo.frac, !lo.exclusive};
  if (hi && hi->int_part == lo.int_part) {
    part(absl::StrCat("\"", lo.int_part, "\""), flo, FracBound{hi->frac, !hi->exclusive});
  } else if (!hi || lo.int_part < hi->int_part) {
    part(absl::StrCat("\"", lo.int_part, "\""), flo, std::nullopt);
    std::optional<int64_t> mid_hi;
    if (hi) mid_hi = static_cast<int64_t>(hi->int_part) - 1;
    if (!mid_hi || static_cast<int64_t>(lo.int_part) + 1 <= *mid_hi) {
      part(IntegerRangeGbnf(static_cast<int64_t>(lo.int_part) + 1, mid_hi), std::nullopt, std::nullopt);
    }
    if (hi) part(absl::StrCat("\"", hi->int_part, "\""), std::nullopt, FracBound{hi->frac, !hi->exclusive});
  }
  if (alts.empty()) return "";
  return alts.size() == 1 ? alts[0] : absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
}

}  // namespace

absl::StatusOr<DecimalBound> DecimalFromDouble(double v, bool exclusive) {
  if (!std::isfinite(v) || std::fabs(v) > 9.0e15) {
    return absl::InvalidArgumentError("bounds beyond +-9e15 are not supported");
  }
  const std::string text = OrderedJson(v).dump();  // shortest round trip, e.g. 1.1, 1e-05
  DecimalBound b;
  b.exclusive = exclusive;
  size_t i = 0;
  if (text[0] == '-') {
    b.negative = true;
    ++i;
  }
  std::string digits;
  int point = -1, exp = 0;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    if (text[i] == '.') {
      point = static_cast<int>(digits.size());
    } else {
      digits.push_back(text[i]);
    }
  }
  if (point < 0) point = static_cast<int>(digits.size());
  if (i < text.size()) exp = std::stoi(text.substr(i + 1));
  point += exp;
  std::string int_digits, frac;
  if (point <= 0) {
    frac = std::string(-point, '0') + digits;
  } else if (point >= static_cast<int>(digits.size())) {
    int_digits = digits + std::string(point - digits.size(), '0');
  } else {
    int_digits = digits.substr(0, point);
    frac = digits.substr(point);
  }
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (frac.size() > 20) return absl::InvalidArgumentError("bounds with more than 20 decimals are not supported");
  for (char c : int_digits) b.int_part = b.int_part * 10 + (c - '0');
  b.frac = frac;
  if (b.int_part == 0 && b.frac.empty()) b.negative = false;  // -0 is 0
  return b;
}

std::string DecimalRangeGbnf(std::optional<DecimalBound> lo, std::optional<DecimalBound> hi) {
  std::vector<std::string> alts;
  if (!lo || lo->negative) {  // x < 0: "-" then the magnitude, in (max(0, -hi), -lo]
    DecimalBound mag_lo{false, 0, "", true};
    if (hi && hi->negative) mag_lo = {false, hi->int_part, hi->frac, hi->exclusive};
    std::optional<DecimalBound> mag_hi;
    if (lo) mag_hi = DecimalBound{false, lo->int_part, lo->frac, lo->exclusive};
    const std::string m = NonNegative(mag_lo, mag_hi);
    if (!m.empty()) alts.push_back(absl::StrCat("\"-\" ", m));
  }
  if (!hi || !hi->negative) {  // x >= 0
    const DecimalBound nn_lo = lo && !lo->negative ? *lo : DecimalBound{};
    const std::string m = NonNegative(nn_lo, hi);
    if (!m.empty()) alts.push_back(m);
  }
  if (alts.empty()) return "";
  return alts.size() == 1 ? alts[0] : absl::StrCat("( ", absl::StrJoin(alts, " | "), " )");
}

}  // namespace rwkvx::grammar
