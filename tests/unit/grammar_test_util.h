// Helpers shared by the grammar unit tests (tests/unit/grammar_*_test.cc): compile
// GBNF / JSON schemas, match whole texts, compare a matcher's mask with a per-token
// brute force. Test-only; one thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/vocab_path.h"

namespace rwkvx::grammar::test_util {

inline std::shared_ptr<const TokenVocabulary> ByteVocab() {
  static auto v = [] {
    std::vector<std::string> t;
    for (int b = 0; b < 256; ++b) t.push_back(std::string(1, static_cast<char>(b)));
    return TokenVocabulary::FromTokens(t);
  }();
  return v;
}

inline std::shared_ptr<const Grammar> Gbnf(const std::string& text) {
  auto g = CompileGbnf(text);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << text;
  return g.ok() ? *g : nullptr;
}

inline std::shared_ptr<const Grammar> Schema(const std::string& schema) {
  auto gbnf = JsonSchemaToGbnf(schema);
  EXPECT_TRUE(gbnf.ok()) << gbnf.status() << "\n" << schema;
  if (!gbnf.ok()) return nullptr;
  return Gbnf(*gbnf);
}

// Whether `text` is a complete sentence of the grammar.
inline bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  if (!g) return false;
  GrammarMatcher m(TokenGrammar::Bind(g, ByteVocab()));
  return m.AcceptBytes(text) && m.IsComplete();
}

// Whether `text` is a prefix of some sentence.
inline bool IsPrefix(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  if (!g) return false;
  GrammarMatcher m(TokenGrammar::Bind(g, ByteVocab()));
  return m.AcceptBytes(text);
}

inline bool Bit(const std::vector<uint32_t>& w, int id) { return (w[id >> 5] >> (id & 31)) & 1; }

// Compares m.FillMask with Accept on a copy of m, token by token.
inline void ExpectMaskMatchesBruteForce(GrammarMatcher& m, const std::string& where) {
  const TokenVocabulary& v = m.token_grammar().vocab();
  std::vector<uint32_t> words(v.mask_words());
  m.FillMask(words.data());
  int bad = 0;
  for (int id = 0; id < v.vocab_size() && bad < 5; ++id) {
    GrammarMatcher copy = m;
    const bool want = copy.Accept(id);
    if (Bit(words, id) != want) {
      ++bad;
      ADD_FAILURE() << where << ": token " << id << " '" << v.token_bytes(id) << "' mask " << Bit(words, id)
                    << " but Accept " << want;
    }
  }
}

inline std::shared_ptr<const TokenVocabulary> WorldVocab() {
  static auto v = []() -> std::shared_ptr<const TokenVocabulary> {
    auto t = LoadWorldTokenizer(TestWorldVocabPath());
    return t.ok() ? TokenVocabulary::Build(**t) : nullptr;
  }();
  return v;
}

}  // namespace rwkvx::grammar::test_util
