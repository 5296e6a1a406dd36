// Matcher and token masks: masks on small vocabularies, tokens spanning several grammar
// symbols or ending inside one (UTF-8 included), end of text, rollback, forks, the mask
// tables against a per-token brute force on random walks, and the world vocabulary.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/matcher.h"
#include "gtest/gtest.h"
#include "tests/unit/grammar_test_util.h"

namespace rwkvx::grammar {
namespace {

using test_util::Bit;
using test_util::ExpectMaskMatchesBruteForce;
using test_util::Gbnf;
using test_util::Schema;

std::vector<int> Allowed(GrammarMatcher& m) {
  std::vector<uint32_t> w(m.token_grammar().vocab().mask_words());
  m.FillMask(w.data());
  std::vector<int> ids;
  for (int id = 0; id < m.token_grammar().vocab().vocab_size(); ++id) {
    if (Bit(w, id)) ids.push_back(id);
  }
  return ids;
}

TEST(GrammarMatcher, MasksOnASmallVocabulary) {
  //                                          1    2     3      4    5    6     7      8
  auto vocab = TokenVocabulary::FromTokens({"{", "\"", "\"a", "a", "b", "\"}", "}", "\":"});
  GrammarMatcher m(TokenGrammar::Bind(Gbnf(R"(root ::= "{" "\"" [ab]* "\"" "}")"), vocab));
  EXPECT_EQ(Allowed(m), (std::vector<int>{1}));
  ASSERT_TRUE(m.Accept(1));
  EXPECT_EQ(Allowed(m), (std::vector<int>{2, 3}));
  ASSERT_TRUE(m.Accept(3));                              // "a: a token over two symbols
  EXPECT_EQ(Allowed(m), (std::vector<int>{2, 4, 5, 6}));  // "} closes both
  EXPECT_FALSE(m.IsComplete());
  EXPECT_FALSE(m.Accept(8));                              // ": is not allowed
  ASSERT_TRUE(m.Accept(6));
  EXPECT_TRUE(m.IsComplete());
  EXPECT_EQ(Allowed(m), (std::vector<int>{0}));           // only the end of text
  ASSERT_TRUE(m.Accept(0));
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_EQ(Allowed(m), (std::vector<int>{}));
  EXPECT_FALSE(m.Accept(0));
}

TEST(GrammarMatcher, TokensEndingInsideAUtf8Character) {
  // "é" is C3 A9; tokens may split it, as the world vocabulary's byte tokens do.
  auto vocab = TokenVocabulary::FromTokens({"\xc3", "\xa9", "\xc3\xa9", "\xa9x", "x", "\xa8"});
  GrammarMatcher m(TokenGrammar::Bind(Gbnf(R"(root ::= [é]+ "x")"), vocab));
  EXPECT_EQ(Allowed(m), (std::vector<int>{1, 3}));
  ASSERT_TRUE(m.Accept(1));
  EXPECT_EQ(Allowed(m), (std::vector<int>{2, 4}));  // A9, or A9 then x; not A8
  ASSERT_TRUE(m.Accept(4));
  EXPECT_TRUE(m.IsComplete());
}

TEST(GrammarMatcher, RollbackAndFork) {
  auto vocab = TokenVocabulary::FromTokens({"a", "b", "c"});
  MatcherOptions opts;
  opts.max_rollback = 4;
  GrammarMatcher m(TokenGrammar::Bind(Gbnf(R"(root ::= "a" ("b" "c")* )"), vocab), opts);
  ASSERT_TRUE(m.Accept(1));
  GrammarMatcher fork = m;
  ASSERT_TRUE(m.Accept(2));
  EXPECT_EQ(Allowed(m), (std::vector<int>{3}));
  EXPECT_EQ(Allowed(fork), (std::vector<int>{0, 2}));  // the fork did not move
  ASSERT_TRUE(m.Rollback(1));
  EXPECT_EQ(Allowed(m), (std::vector<int>{0, 2}));
  EXPECT_FALSE(m.Rollback(2));
  ASSERT_TRUE(m.Accept(2) && m.Accept(3) && m.Accept(2) && m.Accept(3) && m.Accept(2));
  EXPECT_EQ(m.steps_remembered(), 4);  // max_rollback
  ASSERT_TRUE(m.Rollback(4));
  EXPECT_EQ(Allowed(m), (std::vector<int>{3}));
  ASSERT_TRUE(m.Accept(3) && m.Accept(0));
  ASSERT_TRUE(m.Rollback(1));  // undoes the end of text
  EXPECT_FALSE(m.IsTerminated());
}

// A vocabulary of short strings over the characters JSON output uses.
std::shared_ptr<const TokenVocabulary> JsonishVocab() {
  static auto v = [] {
    std::mt19937 rng(7);
    const std::string chars = "{}[]\",:0123456789-.eE+tfrunalsxyzvkidbgo \\/\xc3\xa9";
    std::vector<std::string> tokens;
    for (char c : chars) tokens.push_back(std::string(1, c));
    for (const char* t : {"true", "false", "null", "\"name", "\":", "\",\"", "\"}", "}}", "]}", "\\u00", "\":{\"", "\\\""}) {
      tokens.push_back(t);
    }
    for (int i = 0; i < 400; ++i) {
      std::string t;
      for (int n = 1 + rng() % 5; n > 0; --n) t.push_back(chars[rng() % chars.size()]);
      tokens.push_back(t);
    }
    return TokenVocabulary::FromTokens(tokens);
  }();
  return v;
}

// Random walks: at each step the mask equals the brute force, then a random allowed
// token is taken.
void RandomWalks(const std::shared_ptr<const Grammar>& g, int walks, int steps) {
  ASSERT_TRUE(g);
  auto tg = TokenGrammar::Bind(g, JsonishVocab());
  std::mt19937 rng(11);
  for (int w = 0; w < walks; ++w) {
    GrammarMatcher m(tg);
    std::string text;
    for (int s = 0; s < steps && !m.IsTerminated(); ++s) {
      ExpectMaskMatchesBruteForce(m, "after '" + text + "'");
      std::vector<int> allowed = Allowed(m);
      if (allowed.empty()) break;
      const int t = allowed[rng() % allowed.size()];
      ASSERT_TRUE(m.Accept(t));
      text += std::string(tg->vocab().token_bytes(t));
    }
    if (std::getenv("GRAMMAR_TEST_VERBOSE")) std::fprintf(stderr, "walk: %s\n", text.c_str());
  }
}

TEST(GrammarMatcher, MasksEqualBruteForceOnJsonObject) { RandomWalks(JsonObjectGrammar(), 6, 40); }

TEST(GrammarMatcher, MasksEqualBruteForceOnSchemas) {
  RandomWalks(Schema(R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},
      "n":{"type":"integer","minimum":-20,"maximum":300},"tags":{"type":"array","items":{"enum":["x","yz",1.5,null]},"maxItems":3},
      "sub":{"type":"object","properties":{"z":{"type":"boolean"}},"additionalProperties":{"type":"number"}}},
      "required":["n"]})"),
             8, 40);
  RandomWalks(Schema(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v","kids"]}},"$ref":"#/$defs/node"})"),
             6, 40);
}

TEST(GrammarMatcher, MasksEqualBruteForceOnAmbiguousGbnf) {
  // Several stacks at once: alternatives that share prefixes across rules.
  RandomWalks(Gbnf(R"(root ::= (a | b | c)+
a ::= "x" "y"* "z"
b ::= "x" b? "y"
c ::= "xy" | "\"" [^"]* "\"")"),
             6, 30);
}

TEST(GrammarMatcher, CachedMasksAreTheSame) {
  auto g = Schema(R"({"type":"array","items":{"type":"string"}})");
  auto tg = TokenGrammar::Bind(g, JsonishVocab());
  GrammarMatcher m(tg);
  ASSERT_TRUE(m.AcceptBytes("[\"ab"));
  const std::vector<int> first = Allowed(m);
  ASSERT_TRUE(m.AcceptBytes("c"));  // same state again (the string's loop)
  EXPECT_EQ(Allowed(m), first);
  EXPECT_GE(m.stats().cached_masks, 1u);
}

TEST(GrammarMatcher, LongGenerationsCompactTheirFrames) {
  auto vocab = TokenVocabulary::FromTokens({"[", "]", ","});
  MatcherOptions opts;
  opts.max_rollback = 2;
  GrammarMatcher m(TokenGrammar::Bind(Gbnf("root ::= \"[\" root* \"]\""), vocab), opts);
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(m.Accept(1));  // deep nesting, many frames
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(m.Accept(2));
  EXPECT_TRUE(m.IsComplete());
}

TEST(GrammarMatcher, WorldVocabularyMasks) {
  auto vocab = test_util::WorldVocab();
  if (!vocab) GTEST_SKIP() << "vocabulary not found at " << TestWorldVocabPath();
  auto g = Schema(R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
                      "required":["name","age"]})");
  GrammarMatcher m(TokenGrammar::Bind(g, vocab));
  for (const char* piece : {"{\"", "name", "\":\"", "Bob", " Smith", "\",\"", "age", "\":", "42"}) {
    ExpectMaskMatchesBruteForce(m, piece);
    ASSERT_TRUE(m.AcceptBytes(piece)) << piece;
  }
  std::vector<uint32_t> w(vocab->mask_words());
  m.FillMask(w.data());
  const std::string_view close = "}";
  int close_id = -1;
  for (int id = 1; id < vocab->vocab_size(); ++id) {
    if (vocab->token_bytes(id) == close) close_id = id;
  }
  ASSERT_GT(close_id, 0);
  EXPECT_TRUE(Bit(w, close_id));
  EXPECT_FALSE(Bit(w, 0));
  ASSERT_TRUE(m.Accept(close_id));
  EXPECT_TRUE(m.IsComplete());
}

}  // namespace
}  // namespace rwkvx::grammar
