// Private to the tokenizers: parsing of the RWKV world vocabulary file
// (rwkv_vocab_v20230424.txt). Each line is `<id> <Python str or bytes literal> <byte length>`.
// Pure functions: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

// Parses one Python string or bytes literal ('..', "..", b'..', b"..", B'..') into the
// bytes it denotes (str literals are encoded as UTF-8). Supported escapes: \\ \' \" \a \b
// \f \n \r \t \v \xNN, octal \o \oo \ooo, and in str literals \uNNNN \UNNNNNNNN. An unknown
// escape keeps its backslash, as Python does. Rejected: raw/f/u-prefixed or triple-quoted
// literals, \N{...}, surrogate code points (Python cannot encode them as UTF-8), non-ASCII
// characters inside a bytes literal, unterminated literals and trailing text.
absl::StatusOr<std::string> ParsePythonLiteral(std::string_view lit);

struct VocabEntry {
  int32_t id = 0;
  std::string bytes;
};

// Parses a whole vocabulary file's text. Checks: id is a decimal integer in [1, 2^24),
// ids are unique, the literal parses, the byte length matches; the error message names the
// 1-based line. Blank lines (and a final newline) are skipped; "\r\n" endings are accepted.
absl::StatusOr<std::vector<VocabEntry>> ParseVocab(std::string_view text);

}  // namespace rwkvx
