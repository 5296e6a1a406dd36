// Integer ranges as exact digit grammars (json_schema_compiler.h): split by sign and by
// number of digits; a range of same-length numbers splits on its first digit.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/sampling/grammar/json_schema_compiler.h"

namespace rwkvx::grammar {
namespace {

std::string DigitClass(char lo, char hi) {
  if (lo == hi) return absl::StrCat("\"", std::string(1, lo), "\"");
  return absl::StrCat("[", std::string(1, lo), "-", std::string(1, hi), "]");
}

std::string AnyDigits(size_t n) {
  if (n == 0) return "";
  if (n == 1) return "[0-9]";
  return absl::StrCat("[0-9]{", n, "}");
}

// Numbers written with exactly x.size() == y.size() digits, x <= y (leading zeros kept).
std::string SameLength(const std::string& x, const std::string& y) {
  const size_t n = x.size();
  if (n == 0) return "";
  if (n == 1) return DigitClass(x[0], y[0]);
  if (x[0] == y[0]) return absl::StrCat("\"", std::string(1, x[0]), "\" ", SameLength(x.substr(1), y.substr(1)));
  const std::string zeros(n - 1, '0'), nines(n - 1, '9');
  std::vector<std::string> alts;
  char first_lo = x[0], first_hi = y[0];
  if (x.substr(1) != zeros) {
    alts.push_back(absl::StrCat("\"", std::string(1, x[0]), "\" ", SameLength(x.substr(1), nines)));
    ++first_lo;
  }
  std::string upper;
  if (y.substr(1) != nines) {
    upper = absl::StrCat("\"", std::string(1, y[0]), "\" ", SameLength(zeros, y.substr(1)));
    --first_hi;
  }
  if (first_lo <= first_hi) alts.push_back(absl::StrCat(DigitClass(first_lo, first_hi), " ", AnyDigits(n - 1)));
  if (!upper.empty()) alts.push_back(upper);
  return absl::StrCat("(", absl::StrJoin(alts, " | "), ")");
}

// Positive integers in [a, b] (b absent: unbounded), a >= 1.
std::string Positive(uint64_t a, std::optional<uint64_t> b) {
  std::vector<std::string> alts;
  const std::string sa = std::to_string(a);
  size_t len = sa.size();
  uint64_t lo = a;
  while (true) {
    const std::string top(len, '9');
    const bool last = b && std::to_string(*b).size() == len;
    const std::string hi = last ? std::to_string(*b) : top;
    alts.push_back(SameLength(std::to_string(lo), hi));
    if (last) break;
    if (!b) {  // every longer number
      alts.push_back(absl::StrCat("[1-9] [0-9]{", len, ",}"));
      break;
    }
    ++len;
    lo = 1;
    for (size_t i = 1; i < len; ++i) lo *= 10;
  }
  return alts.size() == 1 ? alts[0] : absl::StrCat("(", absl::StrJoin(alts, " | "), ")");
}

uint64_t Magnitude(int64_t v) { return v < 0 ? uint64_t(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v); }

}  // namespace

std::string IntegerRangeGbnf(std::optional<int64_t> lo, std::optional<int64_t> hi) {
  std::vector<std::string> alts;
  // Negative part: lo..min(hi, -1), written "-" then magnitudes |min(hi,-1)|..|lo|.
  if (!lo || *lo < 0) {
    const uint64_t small = hi && *hi < 0 ? Magnitude(*hi) : 1;
    std::optional<uint64_t> big;
    if (lo) big = Magnitude(*lo);
    alts.push_back(absl::StrCat("\"-\" ", Positive(small, big)));
  }
  // Zero and the positive part.
  if ((!lo || *lo <= 0) && (!hi || *hi >= 0)) alts.push_back("\"0\"");
  if (!hi || *hi >= 1) {
    const uint64_t small = lo && *lo > 1 ? static_cast<uint64_t>(*lo) : 1;
    std::optional<uint64_t> big;
    if (hi) big = static_cast<uint64_t>(*hi);
    alts.push_back(Positive(small, big));
  }
  return alts.size() == 1 ? alts[0] : absl::StrCat("(", absl::StrJoin(alts, " | "), ")");
}

}  // namespace rwkvx::grammar
