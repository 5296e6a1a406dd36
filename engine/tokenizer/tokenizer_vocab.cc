// Vocabulary file parsing: a small Python literal parser (see tokenizer_vocab.h).
#include "engine/tokenizer/tokenizer_vocab.h"

#include <charconv>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/utf8.h"

namespace rwkvx {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads exactly `n` hex digits at s[*pos]; advances *pos.
absl::StatusOr<uint32_t> ReadHex(std::string_view s, size_t* pos, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) {
    if (*pos >= s.size() || HexValue(s[*pos]) < 0) {
      return absl::InvalidArgumentError(absl::StrFormat("truncated \\x/\\u escape (%d hex digits needed)", n));
    }
    v = v * 16 + static_cast<uint32_t>(HexValue(s[(*pos)++]));
  }
  return v;
}

}  // namespace

absl::StatusOr<std::string> ParsePythonLiteral(std::string_view lit) {
  size_t pos = 0;
  bool is_bytes = false;
  if (pos < lit.size() && (lit[pos] == 'b' || lit[pos] == 'B')) {
    is_bytes = true;
    ++pos;
  }
  if (pos >= lit.size() || (lit[pos] != '\'' && lit[pos] != '"')) {
    return absl::InvalidArgumentError("expected a quoted str or bytes literal");
  }
  const char quote = lit[pos++];
  if (lit.size() >= pos + 2 && lit[pos] == quote && lit[pos + 1] == quote) {
    return absl::InvalidArgumentError("triple-quoted literals are not supported");
  }
  std::string out;
  bool closed = false;
  while (pos < lit.size()) {
    const char c = lit[pos++];
    if (c == quote) {
      closed = true;
      break;
    }
    if (c == '\n' || c == '\r') return absl::InvalidArgumentError("newline inside literal");
    if (c != '\\') {
      if (is_bytes && static_cast<unsigned char>(c) >= 0x80) {
        return absl::InvalidArgumentError("non-ASCII character in bytes literal");
      }
      out.push_back(c);  // str literals: the file is UTF-8, so bytes pass through
      continue;
    }
    if (pos >= lit.size()) return absl::InvalidArgumentError("backslash at end of literal");
    const char e = lit[pos++];
    switch (e) {
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'v': out.push_back('\v'); break;
      case 'x': {
        auto v = ReadHex(lit, &pos, 2);
        if (!v.ok()) return v.status();
        if (is_bytes) {
          out.push_back(static_cast<char>(*v));
        } else {
          AppendUtf8(static_cast<char32_t>(*v), &out);  // '\xe9' is U+00E9 in a str
        }
        break;
      }
      case 'u':
      case 'U': {
        if (is_bytes) {  // not an escape in bytes literals: kept verbatim
          out.push_back('\\');
          out.push_back(e);
          break;
        }
        auto v = ReadHex(lit, &pos, e == 'u' ? 4 : 8);
        if (!v.ok()) return v.status();
        if (*v > 0x10FFFF) return absl::InvalidArgumentError("\\U escape above U+10FFFF");
        if (*v >= 0xD800 && *v <= 0xDFFF) {
          return absl::InvalidArgumentError("surrogate code point (not encodable as UTF-8)");
        }
        AppendUtf8(static_cast<char32_t>(*v), &out);
        break;
      }
      case 'N':
        if (!is_bytes) return absl::InvalidArgumentError("\\N{...} escapes are not supported");
        out.push_back('\\');
        out.push_back('N');
        break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = static_cast<uint32_t>(e - '0');
          for (int i = 0; i < 2 && pos < lit.size() && lit[pos] >= '0' && lit[pos] <= '7'; ++i) {
            v = v * 8 + static_cast<uint32_t>(lit[pos++] - '0');
          }
          if (is_bytes) {
            out.push_back(static_cast<char>(v & 0xFF));  // Python: value mod 256 (warns)
          } else {
            AppendUtf8(static_cast<char32_t>(v), &out);
          }
        } else {
          out.push_back('\\');  // unknown escape: Python keeps the backslash
          out.push_back(e);
        }
    }
  }
  if (!closed) return absl::InvalidArgumentError("unterminated literal");
  if (pos != lit.size()) return absl::InvalidArgumentError("text after the closing quote");
  if (!is_bytes && !IsValidUtf8(out)) {
    return absl::InvalidArgumentError("str literal is not valid UTF-8");
  }
  return out;
}

absl::StatusOr<std::vector<VocabEntry>> ParseVocab(std::string_view text) {
  std::vector<VocabEntry> entries;
  std::unordered_set<int32_t> seen;
  size_t line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto fail = [&](std::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("vocabulary line ", line_no, ": ", std::string(why)));
    };
    const size_t first = line.find(' ');
    const size_t last = line.rfind(' ');
    if (first == std::string_view::npos || first == last) {
      return fail("expected `<id> <literal> <length>`");
    }
    const std::string_view id_text = line.substr(0, first);
    const std::string_view lit = line.substr(first + 1, last - first - 1);
    const std::string_view len_text = line.substr(last + 1);
    int64_t id = -1, len = -1;
    auto r1 = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (r1.ec != std::errc() || r1.ptr != id_text.data() + id_text.size() || id < 1 ||
        id >= (1 << 24)) {
      return fail(absl::StrCat("bad token id '", std::string(id_text), "'"));
    }
    auto r2 = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (r2.ec != std::errc() || r2.ptr != len_text.data() + len_text.size() || len < 0) {
      return fail(absl::StrCat("bad byte length '", std::string(len_text), "'"));
    }
    auto bytes = ParsePythonLiteral(lit);
    if (!bytes.ok()) return fail(std::string(bytes.status().message()));
    if (bytes->empty()) return fail("empty token");
    if (static_cast<int64_t>(bytes->size()) != len) {
      return fail(absl::StrCat("literal has ", bytes->size(), " bytes but the line says ", len));
    }
    if (!seen.insert(static_cast<int32_t>(id)).second) {
      return fail(absl::StrCat("duplicate token id ", id));
    }
    entries.push_back({static_cast<int32_t>(id), std::move(*bytes)});
  }
  if (entries.empty()) return absl::InvalidArgumentError("vocabulary is empty");
  return entries;
}

}  // namespace rwkvx
