// GBNF parser and compiler: the dialect's syntax, UTF-8 classes, and errors that name the
// line and column (or the rules) of the problem.
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/grammar.h"
#include "gtest/gtest.h"
#include "tests/unit/grammar_test_util.h"

namespace rwkvx::grammar {
namespace {

using test_util::Gbnf;
using test_util::IsPrefix;
using test_util::Matches;

std::string ErrorOf(const std::string& text, const GrammarLimits& limits = {}) {
  auto g = CompileGbnf(text, limits);
  EXPECT_FALSE(g.ok()) << text;
  if (!g.ok()) {
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  }
  return g.ok() ? "" : std::string(g.status().message());
}

TEST(GrammarGbnf, LiteralsAlternationSequencesGroups) {
  auto g = Gbnf(R"(root ::= "a" ("b" | "cd")* "e" | "x")");
  EXPECT_TRUE(Matches(g, "ae"));
  EXPECT_TRUE(Matches(g, "abcdbe"));
  EXPECT_TRUE(Matches(g, "x"));
  EXPECT_FALSE(Matches(g, "ace"));
  EXPECT_FALSE(Matches(g, "a"));
  EXPECT_TRUE(IsPrefix(g, "abc"));
  EXPECT_FALSE(IsPrefix(g, "xe"));
}

TEST(GrammarGbnf, Repetitions) {
  auto g = Gbnf(R"(root ::= "a"+ "b"? "c"{2} "d"{1,3} "e"{2,} "f"{,1})");
  EXPECT_TRUE(Matches(g, "accdee"));
  EXPECT_FALSE(Matches(g, "aaabccddd eeef"));  // a space is not in the grammar
  EXPECT_TRUE(Matches(g, "aaabccdddeeef"));
  EXPECT_FALSE(Matches(g, "acdee"));     // c{2}
  EXPECT_FALSE(Matches(g, "accddddee"));  // d{1,3}
  EXPECT_FALSE(Matches(g, "accde"));     // e{2,}
  EXPECT_FALSE(Matches(g, "accdeeff"));  // f{,1}
}

TEST(GrammarGbnf, EscapesInLiteralsAndClasses) {
  auto g = Gbnf(R"(root ::= "\"\\\n\t\x41\u00e9\U0001F600" [\]\-\^a] [^"\\])");
  EXPECT_TRUE(Matches(g, "\"\\\n\tA\xc3\xa9\xf0\x9f\x98\x80]z"));
  EXPECT_TRUE(Matches(g, "\"\\\n\tA\xc3\xa9\xf0\x9f\x98\x80-\xe2\x82\xac"));  // any non-" char
  EXPECT_FALSE(Matches(g, "\"\\\n\tA\xc3\xa9\xf0\x9f\x98\x80]\""));
}

TEST(GrammarGbnf, Utf8Classes) {
  auto g = Gbnf(R"(root ::= [a-zé-ë\u4e00-\u9fff]+)");
  EXPECT_TRUE(Matches(g, "abc\xc3\xa9\xe4\xb8\x80"));  // "abcé一"
  EXPECT_FALSE(Matches(g, "\xc3\xac"));               // ì is outside é-ë
  EXPECT_TRUE(IsPrefix(g, "\xe4\xb8"));               // half of 一
  EXPECT_FALSE(IsPrefix(g, "\xe4\x80"));              // U+4000: below the range
  auto any = Gbnf(R"(root ::= .)");
  EXPECT_TRUE(Matches(any, std::string(1, '\0')));
  EXPECT_TRUE(Matches(any, "\xf4\x8f\xbf\xbf"));       // U+10FFFF
  EXPECT_FALSE(Matches(any, "\xed\xa0\x80"));          // a surrogate is not UTF-8
  EXPECT_FALSE(Matches(any, "\xc0\x80"));              // overlong
  EXPECT_FALSE(Matches(any, "\xf4\x90\x80\x80"));      // above U+10FFFF
}

TEST(GrammarGbnf, RulesCommentsAndLines) {
  auto g = Gbnf(R"(# a comment
root ::= item ("," item)*   # trailing comment
item ::=
  "x" |
  "y"
  | ( "z"
      "w" )
)");
  EXPECT_TRUE(Matches(g, "x,y,zw"));
  EXPECT_FALSE(Matches(g, "x,z"));
}

TEST(GrammarGbnf, RecursionEmptyAndNullableLoops) {
  auto g = Gbnf("root ::= \"(\" root* \")\" | \"\"");
  EXPECT_TRUE(Matches(g, ""));
  EXPECT_TRUE(Matches(g, "(()(()))"));
  EXPECT_FALSE(Matches(g, "(()"));
  auto n = Gbnf("root ::= (opt)* \"!\"\nopt ::= \"a\"?");  // a nullable rule in a loop
  EXPECT_TRUE(Matches(n, "aaa!"));
  EXPECT_TRUE(Matches(n, "!"));
  auto right = Gbnf("root ::= \"a\" root | \"b\"");  // right recursion: tail calls
  std::string long_text(5000, 'a');
  EXPECT_TRUE(Matches(right, long_text + "b"));
}

TEST(GrammarGbnf, ErrorsNameLineAndColumn) {
  EXPECT_EQ(ErrorOf("root ::= \"a\"\nfoo = \"b\""), "grammar: line 2, column 5: expected '::=' after rule name 'foo', found '='");
  EXPECT_EQ(ErrorOf("root ::= \"abc"), "grammar: line 1, column 10: unterminated string literal");
  EXPECT_EQ(ErrorOf("root ::= [abc"), "grammar: line 1, column 10: unterminated character class (expected ']')");
  EXPECT_EQ(ErrorOf("root ::= ( \"a\" "), "grammar: line 1, column 10: unclosed '(' (expected ')')");
  EXPECT_EQ(ErrorOf("root ::= \"a\" | undefined-rule"), "grammar: line 1, column 16: undefined rule 'undefined-rule'");
  EXPECT_EQ(ErrorOf("root ::= \"a\"\nroot ::= \"b\""), "grammar: line 2, column 1: rule 'root' is defined twice");
  EXPECT_EQ(ErrorOf("item ::= \"a\""), "grammar: no rule named 'root'");
  EXPECT_EQ(ErrorOf("root ::= \"\\q\""), "grammar: line 1, column 11: unknown escape '\\q'");
  EXPECT_EQ(ErrorOf("root ::= [z-a]"), "grammar: line 1, column 11: range U+7A-U+61 is backwards");
  EXPECT_EQ(ErrorOf("root ::= *"), "grammar: line 1, column 10: repetition '*' has nothing to repeat");
  EXPECT_EQ(ErrorOf("root ::= \"a\"{3,2}"), "grammar: line 1, column 13: repetition {3,2}: max below min");
  EXPECT_EQ(ErrorOf("root ::= \"\\uD800\""), "grammar: line 1, column 11: U+D800 is not a Unicode scalar value");
  EXPECT_EQ(ErrorOf("root ::= \"a\" \"b\" )"), "grammar: line 1, column 18: expected the end of rule 'root', found ')'");
  EXPECT_EQ(ErrorOf("root ::= <token>"), "grammar: line 1, column 10: token references (<...>) are not supported");
  EXPECT_EQ(ErrorOf("root ::= \"\xff\""), "grammar: line 1, column 11: invalid UTF-8 in the grammar text");
  EXPECT_EQ(ErrorOf("root ::= []"), "grammar: the root rule matches no text at all");
}

TEST(GrammarGbnf, LeftRecursionIsRejected) {
  EXPECT_EQ(ErrorOf("root ::= root \"a\" | \"b\""),
            "grammar: left recursion is not supported: rule 'root' can reach itself without consuming input "
            "(root -> root)");
  EXPECT_EQ(ErrorOf("root ::= a\na ::= b? c\nb ::= \"x\"\nc ::= a \"y\" | \"z\""),
            "grammar: left recursion is not supported: rule 'a' can reach itself without consuming input "
            "(a -> c -> a)");
}

TEST(GrammarGbnf, Limits) {
  GrammarLimits small;
  small.max_nfa_states = 1000;
  EXPECT_EQ(ErrorOf("root ::= (\"abcdefgh\"{100}){100}", small),
            "grammar too large: more than 1000 automaton states (repetition counts multiply the size of what "
            "they repeat)");
  EXPECT_EQ(ErrorOf("root ::= \"a\"{100001}"), "grammar: line 1, column 13: repetition count above the limit of 10000");
  std::string deep = "root ::= " + std::string(200, '(') + "\"a\"" + std::string(200, ')');
  EXPECT_EQ(ErrorOf(deep), "grammar: line 1, column 110: groups nested deeper than 100");
  GrammarLimits tiny_text;
  tiny_text.max_text_bytes = 10;
  EXPECT_EQ(ErrorOf("root ::= \"aaaaaaaa\"", tiny_text), "grammar: 19 bytes is more than the limit of 10");
}

TEST(GrammarGbnf, AdversarialGrammarsFailFast) {
  EXPECT_EQ(ErrorOf("root ::= \"a\"" + std::string(5000, '*')),
            "grammar: line 1, column 114: more than 100 repetition operators in a row");
  // Determinization would need 2^21 states.
  EXPECT_EQ(ErrorOf("root ::= [ab]* \"a\" [ab]{20}"),
            "grammar too large: more than 200000 automaton states after determinization");
  // The subset construction's work is bounded too (GrammarLimits::max_determinize_steps):
  // the same grammar fails on that budget first when it is small.
  GrammarLimits few_steps;
  few_steps.max_determinize_steps = 100000;
  EXPECT_EQ(ErrorOf("root ::= [ab]* \"a\" [ab]{20}", few_steps),
            "grammar too large: determinizing it takes more than 100000 steps");
  // Nullable rules in sequence: the ways to expand multiply with the depth.
  std::string text = "root ::= r0 \"x\"\n";
  for (int i = 0; i < 30; ++i) {
    absl::StrAppend(&text, "r", i, " ::= r", i + 1, "? \"-\"? r", i + 1, "? \"+\"? r", i + 1, "?\n");
  }
  text += "r30 ::= \"y\"?\n";
  EXPECT_EQ(ErrorOf(text), "grammar too large: too many ways to expand its rules");
  // A long chain of rules compiles (in one pass, not one pass per rule).
  std::string chain = "root ::= c0\n";
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&chain, "c", i, " ::= \"a\" c", i + 1, "?\n");
  chain += "c5000 ::= \"b\"\n";
  auto g = Gbnf(chain);
  EXPECT_TRUE(Matches(g, "aaa"));
  EXPECT_FALSE(Matches(g, "aaab"));  // "b" comes after 5000 a's only
}

TEST(GrammarGbnf, SameRulesShareKeys) {
  // Rule keys depend on behaviour only: renamed rules in another grammar get the same key.
  auto a = Gbnf("root ::= \"[\" item (\",\" item)* \"]\"\nitem ::= [0-9]+ | \"x\" item \"y\"");
  auto b = Gbnf("root ::= \"(\" elem* \")\"\nelem ::= [0-9]+ | \"x\" elem \"y\"");
  ASSERT_TRUE(a && b);
  auto key_of = [](const Grammar& g, const std::string& name) {
    for (size_t r = 0; r < g.rules.size(); ++r) {
      if (g.rules[r].name == name) return g.rule_keys[r];
    }
    return std::string("missing");
  };
  EXPECT_EQ(key_of(*a, "item"), key_of(*b, "elem"));
  EXPECT_NE(key_of(*a, "root"), key_of(*b, "root"));
}

}  // namespace
}  // namespace rwkvx::grammar
