// UTF-8 validation and replacement helpers shared by the tokenizers, StreamDecoder and the
// service layer. Pure functions, no state: safe from any thread.
//
// Replacement policy (the one Python's bytes.decode("utf-8", errors="replace") and the
// WHATWG encoding standard use, "substitution of maximal subparts"): every maximal subpart
// of an ill-formed sequence becomes one U+FFFD. A maximal subpart is either a single byte
// that can never start a sequence (80..BF, C0, C1, F5..FF) or the longest prefix of a
// well-formed sequence that is followed by a byte that cannot continue it (or by the end of
// the input). Examples: "E2 82 41" -> U+FFFD "A"; "ED A0 80" -> 3 x U+FFFD (surrogates are
// never valid); "F0 9F 98" at the end -> one U+FFFD.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace rwkvx {

inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";  // U+FFFD

enum class Utf8Seq {
  kValid,       // a complete, well-formed sequence of `len` bytes
  kIncomplete,  // the `len` bytes up to the end of the input could still become valid
  kInvalid,     // a maximal ill-formed subpart of `len` bytes (>= 1): one U+FFFD
};

// Classifies the sequence starting at s[0] (s must be non-empty); sets *len.
Utf8Seq ClassifyUtf8(std::string_view s, size_t* len);

// Decodes `s` replacing ill-formed parts with U+FFFD. With `final` false, a trailing
// incomplete sequence is not decoded: its length is returned in *held (may be null only
// when final is true).
std::string ReplaceInvalidUtf8(std::string_view s, bool final = true, size_t* held = nullptr);

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF; surrogates are encoded as
// the 3-byte form, which callers must reject themselves if they care).
void AppendUtf8(char32_t cp, std::string* out);

// Declared in engine/tokenizer/tokenizer.h as well:
size_t ValidUtf8Prefix(std::string_view s);
bool IsValidUtf8(std::string_view s);

}  // namespace rwkvx
