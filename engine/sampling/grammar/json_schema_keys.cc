// Keys of additional properties (json_schema_compiler.h): a JSON string in canonical form
// (escapes only for '"', '\' and control characters, as json.dumps writes them) whose
// text is none of the declared property names. In canonical form a text has one spelling,
// so excluding the declared names' canonical spellings is exact: a trie of the names,
// where each node allows its children, any other character (then anything), and the
// closing quote unless a name ends there.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/sampling/grammar/json_schema_compiler.h"

namespace rwkvx::grammar {
namespace {

// Canonical escapes of control characters other than \b \f \n \r \t.
bool UsesUnicodeEscape(unsigned c) { return c < 0x20 && c != 8 && c != 9 && c != 10 && c != 12 && c != 13; }

// The canonical units of a key: one per code point, raw UTF-8 or an escape sequence.
std::vector<std::string> Units(const std::string& key) {
  std::vector<std::string> out;
  for (size_t i = 0; i < key.size();) {
    const unsigned char c = static_cast<unsigned char>(key[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    const std::string cp = key.substr(i, len);
    i += len;
    if (len == 1 && (c == '"' || c == '\\' || c < 0x20)) {
      const std::string quoted = CanonicalJsonString(cp);
      out.push_back(quoted.substr(1, quoted.size() - 2));
    } else {
      out.push_back(cp);
    }
  }
  return out;
}

struct TrieNode {
  std::map<std::string, std::unique_ptr<TrieNode>> children;
  bool ends_key = false;
};

std::string ClassChar(const std::string& unit) {  // a raw unit inside a GBNF class
  if (unit == "]" || unit == "\\" || unit == "^" || unit == "-" || unit == "[") return "\\" + unit;
  return unit;
}

}  // namespace

absl::StatusOr<std::string> SchemaCompiler::ExcludingKeys(const std::vector<std::string>& keys) {
  if (keys.empty()) return Primitive("json-string");
  for (const auto& k : keys) {
    if (k.size() > 1000) {
      return absl::InvalidArgumentError(
          "json schema: property names above 1000 bytes are not supported next to additionalProperties");
    }
  }
  std::string escape_alts;
  std::vector<std::string> all_escapes = {"\\\"", "\\\\", "\\b", "\\f", "\\n", "\\r", "\\t"};
  for (unsigned c = 0; c < 0x20; ++c) {
    if (UsesUnicodeEscape(c)) all_escapes.push_back(absl::StrFormat("\\u%04x", c));
  }
  const std::string canon_escape = AddRule(
      "canon-escape", "\"\\\\\" ( [\"\\\\bfnrt] | \"u00\" ( \"0\" [0-7bef] | \"1\" [0-9a-f] ) )");
  const std::string key_rest =
      AddRule("canon-key-rest", absl::StrCat("( [^\"\\\\\\x00-\\x1F] | ", canon_escape, " )* \"\\\"\""));
  TrieNode root;
  for (const auto& k : keys) {
    TrieNode* n = &root;
    for (const auto& u : Units(k)) {
      auto& child = n->children[u];
      if (!child) child = std::make_unique<TrieNode>();
      n = child.get();
    }
    n->ends_key = true;
  }
  // Post-order: each node's rule refers to its children's rules.
  std::function<std::string(const TrieNode&)> build = [&](const TrieNode& node) -> std::string {
    std::vector<std::string> alts;
    std::string raw_excluded;
    std::vector<std::string> escapes_excluded;
    for (const auto& [unit, child] : node.children) {
      alts.push_back(absl::StrCat(GbnfLiteral(unit), " ", build(*child)));
      if (unit[0] == '\\') {
        escapes_excluded.push_back(unit);
      } else {
        raw_excluded += ClassChar(unit);
      }
    }
    std::string other = absl::StrCat("[^\"\\\\\\x00-\\x1F", raw_excluded, "]");
    if (escapes_excluded.empty()) {
      absl::StrAppend(&other, " | ", canon_escape);
    } else {
      for (const auto& e : all_escapes) {
        if (std::find(escapes_excluded.begin(), escapes_excluded.end(), e) == escapes_excluded.end()) {
          absl::StrAppend(&other, " | ", GbnfLiteral(e));
        }
      }
    }
    alts.push_back(absl::StrCat("( ", other, " ) ", key_rest));
    if (!node.ends_key) alts.push_back("\"\\\"\"");
    return AddRule("key-except", absl::StrJoin(alts, " | "));
  };
  return AddRule("key", absl::StrCat("\"\\\"\" ", build(root)));
}

}  // namespace rwkvx::grammar
