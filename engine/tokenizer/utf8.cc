// UTF-8 helpers: see utf8.h for the replacement policy.
#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace rwkvx {

Utf8Seq ClassifyUtf8(std::string_view s, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    *len = 1;
    return Utf8Seq::kValid;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;       // no overlongs
    if (b0 == 0xED) hi = 0x9F;       // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;       // no overlongs
    if (b0 == 0xF4) hi = 0x8F;       // nothing above U+10FFFF
  } else {
    *len = 1;  // 80..BF, C0, C1, F5..FF: never valid anywhere
    return Utf8Seq::kInvalid;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= n) {
      *len = i;
      return Utf8Seq::kIncomplete;
    }
    const unsigned char b = p[i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *len = i;
      return Utf8Seq::kInvalid;
    }
  }
  *len = need;
  return Utf8Seq::kValid;
}

std::string ReplaceInvalidUtf8(std::string_view s, bool final, size_t* held) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  if (held) *held = 0;
  while (pos < s.size()) {
    // Fast path for runs of ASCII.
    while (pos < s.size() && static_cast<unsigned char>(s[pos]) < 0x80) out.push_back(s[pos++]);
    if (pos >= s.size()) break;
    size_t len = 0;
    switch (ClassifyUtf8(s.substr(pos), &len)) {
      case Utf8Seq::kValid:
        out.append(s.substr(pos, len));
        break;
      case Utf8Seq::kInvalid:
        out.append(kUtf8Replacement);
        break;
      case Utf8Seq::kIncomplete:
        if (!final) {
          if (held) *held = s.size() - pos;
          return out;
        }
        out.append(kUtf8Replacement);
        break;
    }
    pos += len;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  const uint32_t c = static_cast<uint32_t>(cp);
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

size_t ValidUtf8Prefix(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t len = 0;
    if (ClassifyUtf8(s.substr(pos), &len) != Utf8Seq::kValid) return pos;
    pos += len;
  }
  return pos;
}

bool IsValidUtf8(std::string_view s) { return ValidUtf8Prefix(s) == s.size(); }

}  // namespace rwkvx
