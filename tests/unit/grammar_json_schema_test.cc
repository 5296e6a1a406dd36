// JSON schema -> grammar: each supported keyword accepts what it should and rejects what it
// should (compact output), and unsupported keywords are errors that name them.
#include <cstdio>
#include <string>

#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/json_schema_compiler.h"
#include "gtest/gtest.h"
#include "tests/unit/grammar_test_util.h"

namespace rwkvx::grammar {
namespace {

using test_util::IsPrefix;
using test_util::Matches;
using test_util::Schema;

std::string ErrorOf(const std::string& schema) {
  auto g = CompileJsonSchema(schema);
  EXPECT_FALSE(g.ok()) << schema;
  if (!g.ok()) {
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  }
  return g.ok() ? "" : std::string(g.status().message());
}

TEST(GrammarJsonSchema, Primitives) {
  auto s = Schema(R"({"type":"string"})");
  EXPECT_TRUE(Matches(s, R"("")"));
  EXPECT_TRUE(Matches(s, R"("a\"b\\\u00e9\n é")"));
  EXPECT_FALSE(Matches(s, "\"a\nb\""));  // a raw control character
  EXPECT_FALSE(Matches(s, R"("\x")"));
  auto n = Schema(R"({"type":"number"})");
  for (const char* ok : {"0", "-0", "12", "-3.25", "1e9", "2.5E-3"}) EXPECT_TRUE(Matches(n, ok)) << ok;
  for (const char* bad : {"01", "1.", ".5", "+1", "1e", "- 1"}) EXPECT_FALSE(Matches(n, bad)) << bad;
  auto i = Schema(R"({"type":"integer"})");
  EXPECT_TRUE(Matches(i, "-17"));
  EXPECT_FALSE(Matches(i, "1.0"));  // integers are written without a fraction
  EXPECT_TRUE(Matches(Schema(R"({"type":"boolean"})"), "false"));
  EXPECT_TRUE(Matches(Schema(R"({"type":"null"})"), "null"));
  auto multi = Schema(R"({"type":["string","null"]})");
  EXPECT_TRUE(Matches(multi, "null"));
  EXPECT_TRUE(Matches(multi, R"("x")"));
  EXPECT_FALSE(Matches(multi, "1"));
}

TEST(GrammarJsonSchema, StringLengths) {
  auto s = Schema(R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_FALSE(Matches(s, R"("a")"));
  EXPECT_TRUE(Matches(s, R"("ab")"));
  EXPECT_TRUE(Matches(s, R"("a\u00e9é")"));  // length counts characters, escapes included
  EXPECT_FALSE(Matches(s, R"("abcd")"));
}

TEST(GrammarJsonSchema, IntegerRanges) {
  auto r = Schema(R"({"type":"integer","minimum":-15,"maximum":1234})");
  for (int v = -40; v <= 1300; ++v) {
    EXPECT_EQ(Matches(r, std::to_string(v)), v >= -15 && v <= 1234) << v;
  }
  EXPECT_FALSE(Matches(r, "007"));
  auto ex = Schema(R"({"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10.5})");
  for (int v = -3; v <= 13; ++v) EXPECT_EQ(Matches(ex, std::to_string(v)), v >= 1 && v <= 10) << v;
  auto d4 = Schema(R"({"type":"integer","minimum":5,"exclusiveMinimum":true})");  // draft 4
  EXPECT_FALSE(Matches(d4, "5"));
  EXPECT_TRUE(Matches(d4, "6"));
  EXPECT_TRUE(Matches(d4, "123456789012"));
  auto neg = Schema(R"({"type":"integer","maximum":-100})");
  EXPECT_TRUE(Matches(neg, "-100"));
  EXPECT_TRUE(Matches(neg, "-99999"));
  EXPECT_FALSE(Matches(neg, "-99"));
  EXPECT_FALSE(Matches(neg, "0"));
}

TEST(GrammarJsonSchema, NumberRanges) {
  auto r = Schema(R"({"type":"number","minimum":0,"exclusiveMaximum":10})");
  for (const char* ok : {"0", "0.0", "0.5", "9", "9.999", "3"}) EXPECT_TRUE(Matches(r, ok)) << ok;
  for (const char* bad : {"-0.5", "-1", "10", "10.0", "10.5", "1e3"}) EXPECT_FALSE(Matches(r, bad)) << bad;
  auto p = Schema(R"({"type":"number","exclusiveMinimum":-2,"maximum":3})");
  for (const char* ok : {"-1.99", "-1", "0", "3", "3.000", "2.5"}) EXPECT_TRUE(Matches(p, ok)) << ok;
  for (const char* bad : {"-2", "-2.0", "-2.5", "3.01", "4"}) EXPECT_FALSE(Matches(p, bad)) << bad;
}

TEST(GrammarJsonSchema, FractionalNumberBounds) {
  // Every decimal with up to 3 fraction digits in [-4, 4] against the bounds, as doubles.
  struct Case {
    const char* schema;
    double lo, hi;
    bool lo_excl, hi_excl;
  };
  const Case cases[] = {
      {R"({"type":"number","minimum":-1.25,"maximum":2.5})", -1.25, 2.5, false, false},
      {R"({"type":"number","exclusiveMinimum":-1.25,"exclusiveMaximum":0.075})", -1.25, 0.075, true, true},
      {R"({"type":"number","exclusiveMinimum":0.1,"maximum":0.105})", 0.1, 0.105, true, false},
      {R"({"type":"number","minimum":-3.5,"exclusiveMaximum":-0.25})", -3.5, -0.25, false, true},
      {R"({"type":"number","exclusiveMinimum":1.5})", 1.5, 1e9, true, false},
  };
  for (const Case& c : cases) {
    auto g = Schema(c.schema);
    for (int v = -4000; v <= 4000; v += 5) {
      for (int digits : {0, 1, 2, 3}) {
        if (digits < 3 && v % (digits == 0 ? 1000 : digits == 1 ? 100 : 10) != 0) continue;
        const double x = v / 1000.0;
        char text[32];
        std::snprintf(text, sizeof text, "%.*f", digits, x);
        const bool want = (c.lo_excl ? x > c.lo : x >= c.lo) && (c.hi_excl ? x < c.hi : x <= c.hi);
        EXPECT_EQ(Matches(g, text), want) << c.schema << " " << text;
      }
    }
  }
  EXPECT_FALSE(Matches(Schema(R"({"type":"number","minimum":-1})"), "-0"));  // bounded: no "-0"
  EXPECT_EQ(ErrorOf(R"({"type":"number","minimum":1e-30})"),
            "json schema: at #: bounds with more than 20 decimals are not supported");
}

TEST(GrammarJsonSchema, ObjectsInSchemaOrder) {
  auto o = Schema(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},
                      "c":{"type":"boolean"}},"required":["b"]})");
  EXPECT_TRUE(Matches(o, R"({"b":"x"})"));
  EXPECT_TRUE(Matches(o, R"({"a":1,"b":"x","c":true})"));
  EXPECT_TRUE(Matches(o, R"({"b":"x","c":false})"));
  EXPECT_FALSE(Matches(o, R"({"a":1})"));            // b is required
  EXPECT_FALSE(Matches(o, R"({"b":"x","a":1})"));    // schema order
  EXPECT_FALSE(Matches(o, R"({"b":"x","d":1})"));    // additionalProperties omitted = false
  EXPECT_FALSE(Matches(o, R"({ "b":"x"})"));         // no whitespace
  EXPECT_FALSE(Matches(o, R"({"b" : "x"})"));
  EXPECT_FALSE(Matches(o, R"({,"b":"x"})"));
  auto none_required = Schema(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}})");
  EXPECT_TRUE(Matches(none_required, "{}"));
  EXPECT_TRUE(Matches(none_required, R"({"b":2})"));
  EXPECT_FALSE(Matches(none_required, R"({,"b":2})"));
  EXPECT_FALSE(Matches(none_required, R"({"a":1,})"));
}

TEST(GrammarJsonSchema, AdditionalProperties) {
  auto any = Schema(R"({"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":true})");
  EXPECT_TRUE(Matches(any, R"({"id":1,"x":[1,{"y":null}]})"));
  EXPECT_TRUE(Matches(any, R"({"x":"y"})"));
  EXPECT_FALSE(Matches(any, R"({"id":1,"id":"not an integer"})"));  // a declared key is not additional
  EXPECT_FALSE(Matches(any, R"({"x":1,"id":"s"})"));
  EXPECT_TRUE(Matches(any, R"({"i":1,"idx":2,"\"":3})"));
  auto typed = Schema(R"({"type":"object","additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(Matches(typed, R"({"a":1,"b":2})"));
  EXPECT_FALSE(Matches(typed, R"({"a":"1"})"));
}

TEST(GrammarJsonSchema, Arrays) {
  auto a = Schema(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})");
  EXPECT_FALSE(Matches(a, "[]"));
  EXPECT_TRUE(Matches(a, "[1]"));
  EXPECT_TRUE(Matches(a, "[1,2,3]"));
  EXPECT_FALSE(Matches(a, "[1,2,3,4]"));
  EXPECT_FALSE(Matches(a, "[1,]"));
  auto tuple = Schema(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":{"type":"null"}})");
  EXPECT_TRUE(Matches(tuple, "[]"));
  EXPECT_TRUE(Matches(tuple, R"(["a"])"));
  EXPECT_TRUE(Matches(tuple, R"(["a",1,null,null])"));
  EXPECT_FALSE(Matches(tuple, R"(["a",null])"));
  auto closed = Schema(R"({"type":"array","items":[{"type":"integer"}],"minItems":1})");  // draft 7 tuple, strict
  EXPECT_TRUE(Matches(closed, "[1]"));
  EXPECT_FALSE(Matches(closed, "[1,2]"));
  EXPECT_TRUE(Matches(Schema(R"({"type":"array"})"), R"([1,"x",{}])"));
}

TEST(GrammarJsonSchema, EnumConstAnyOfRefs) {
  auto e = Schema(R"({"enum":["red",3,null,{"a":[1.0]},"with \"quote\""]})");
  for (const char* ok : {R"("red")", "3", "null", R"({"a":[1]})", R"("with \"quote\"")"}) {
    EXPECT_TRUE(Matches(e, ok)) << ok;
  }
  EXPECT_FALSE(Matches(e, R"("blue")"));
  auto typed_enum = Schema(R"({"type":"string","enum":["a",1]})");
  EXPECT_FALSE(Matches(typed_enum, "1"));
  EXPECT_TRUE(Matches(Schema(R"({"const":"fixed"})"), R"("fixed")"));
  auto any = Schema(R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"string"}}]})");
  EXPECT_TRUE(Matches(any, "5"));
  EXPECT_TRUE(Matches(any, R"(["x"])"));
  EXPECT_FALSE(Matches(any, R"("x")"));
  auto typed_any = Schema(R"({"type":["string","integer"],"oneOf":[{"maxLength":2},{"type":"number","minimum":5},{"type":"null"}]})");
  EXPECT_TRUE(Matches(typed_any, R"("ab")"));
  EXPECT_FALSE(Matches(typed_any, R"("abc")"));
  EXPECT_TRUE(Matches(typed_any, "7"));    // number & integer = integer
  EXPECT_FALSE(Matches(typed_any, "7.5"));
  EXPECT_TRUE(Matches(typed_any, "3"));    // the first branch: maxLength does not apply to integers
  EXPECT_FALSE(Matches(typed_any, "null"));  // null is not among the sibling's types
  auto rec = Schema(R"({"type":"object","properties":{"next":{"$ref":"#"},"v":{"type":"integer"}},"required":["v"]})");
  EXPECT_TRUE(Matches(rec, R"({"next":{"next":{"v":3},"v":2},"v":1})"));
  auto defs = Schema(R"({"definitions":{"a~b/c":{"type":"boolean"}},"$ref":"#/definitions/a~0b~1c"})");
  EXPECT_TRUE(Matches(defs, "true"));
  EXPECT_TRUE(Matches(Schema(R"({"allOf":[{"type":"null"}]})"), "null"));
}

TEST(GrammarJsonSchema, AnyValueAndJsonObject) {
  auto any = Schema("{}");
  for (const char* ok : {"1", R"("s")", "[]", R"({"a":{"b":[true,false,null]}})"}) EXPECT_TRUE(Matches(any, ok)) << ok;
  auto obj = JsonObjectGrammar();
  ASSERT_TRUE(obj);
  EXPECT_TRUE(Matches(obj, R"({"a":[1,{"b":"c"}],"d":-1.5e3})"));
  EXPECT_FALSE(Matches(obj, "[1]"));
  EXPECT_FALSE(Matches(obj, R"({"a": 1})"));
  EXPECT_TRUE(IsPrefix(obj, R"({"a":[1,{"b)"));
}

TEST(GrammarJsonSchema, AnnotationsAndFormatAreIgnored) {
  auto s = Schema(R"({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"T",
      "description":"D","$comment":"C","examples":["a"],"default":"a","type":"string","format":"date-time",
      "deprecated":false,"readOnly":true,"writeOnly":false})");
  EXPECT_TRUE(Matches(s, R"("not a date")"));
}

// `pattern`: the value (decoded) matches the expression anywhere unless anchored; the JSON
// text is canonical (characters that must be escaped are, with json.dumps's spelling).
TEST(GrammarJsonSchema, Patterns) {
  auto s = [](const std::string& re) {
    return Schema(std::string(R"({"type":"string","pattern":)") + CanonicalJsonString(re) + "}");
  };
  auto zip = s("^[0-9]{5}(-[0-9]{4})?$");
  for (const char* ok : {R"("12345")", R"("12345-6789")"}) EXPECT_TRUE(Matches(zip, ok)) << ok;
  for (const char* bad : {R"("1234")", R"("123456")", R"("12345-678")", R"("a2345")", R"("12345 ")"})
    EXPECT_FALSE(Matches(zip, bad)) << bad;
  auto contains = s("ab+c");  // unanchored: anywhere in the value
  for (const char* ok : {R"("abc")", R"("xxabbbcyy")", R"("\"abc\\")"}) EXPECT_TRUE(Matches(contains, ok)) << ok;
  for (const char* bad : {R"("ac")", R"("abx")"}) EXPECT_FALSE(Matches(contains, bad)) << bad;
  auto head = s("^id_");  // anchored at the start only
  EXPECT_TRUE(Matches(head, R"("id_7 and more")"));
  EXPECT_FALSE(Matches(head, R"("x id_7")"));
  auto alts = s("^cat$|^dog$|fish");
  for (const char* ok : {R"("cat")", R"("dog")", R"("goldfish!")"}) EXPECT_TRUE(Matches(alts, ok)) << ok;
  for (const char* bad : {R"("cats")", R"("hotdog")"}) EXPECT_FALSE(Matches(alts, bad)) << bad;
  // Escapes the JSON text needs: a quote, a backslash, a newline and other control characters
  // are written as json.dumps writes them (one spelling); other characters raw.
  auto quote = s(R"(^a"b\\c\nd\x01é$)");
  EXPECT_TRUE(Matches(quote, R"("a\"b\\c\nd\u0001é")"));
  EXPECT_FALSE(Matches(quote, R"("a\"b\\c\u000ad\u0001é")"));  // not canonical
  EXPECT_FALSE(Matches(quote, R"("a\"b\\c\nd\u0001\u00e9")"));
  // Classes: ranges, negation, \d \w \s, '.', Unicode, the escaped characters inside.
  auto cls = s(R"(^[^a-z"]\w\s.\D[\u00e0-\u00ff]$)");
  EXPECT_TRUE(Matches(cls, R"("\\_ xyà")"));
  EXPECT_TRUE(Matches(cls, R"("Q9\té-ÿ")"));
  EXPECT_FALSE(Matches(cls, R"("\"_ xyà")"));  // [^a-z"] excludes the quote
  EXPECT_FALSE(Matches(cls, R"("a_ xyà")"));   // and a
  EXPECT_FALSE(Matches(cls, R"("Q_ \nyà")"));  // '.' is not a line terminator
  EXPECT_FALSE(Matches(cls, R"("Q_ x7à")"));   // \D
  auto counted = s("^(?:ab){2,3}x*?(?<tail>y|z)?$");
  for (const char* ok : {R"("abab")", R"("abababxxz")", R"("ababy")"}) EXPECT_TRUE(Matches(counted, ok)) << ok;
  for (const char* bad : {R"("ab")", R"("abababab")", R"("ababyz")"}) EXPECT_FALSE(Matches(counted, bad)) << bad;
  auto brace = s("^a{b$");  // a '{' that starts no quantifier is a literal (ECMA-262)
  EXPECT_TRUE(Matches(brace, R"("a{b")"));
  auto any = s("^[^]$");
  EXPECT_TRUE(Matches(any, R"("\n")"));
  EXPECT_TRUE(Matches(any, R"("😀")"));
  // Inferred type, and errors that name what is not supported.
  EXPECT_TRUE(Matches(Schema(R"({"pattern":"^x$"})"), R"("x")"));
  EXPECT_EQ(ErrorOf(R"j({"type":"string","pattern":"^(a)\\1$"})j"),
            "json schema: at #: pattern: backreferences are not supported (at character 5)");
  EXPECT_EQ(ErrorOf(R"j({"type":"string","pattern":"a(?=b)"})j"),
            "json schema: at #: pattern: lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not supported (at character 2)");
  EXPECT_EQ(ErrorOf(R"({"type":"string","pattern":"\\bword"})"),
            "json schema: at #: pattern: '\\b' (a word boundary) is not supported (at character 1)");
  EXPECT_NE(ErrorOf(R"j({"type":"string","pattern":"a(^b)"})j").find("supported only at the start"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"(ab"})").find("missing ')'"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"[b-a]"})").find("out of order"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"a{3,2}"})").find("n < m"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"a{5000}"})").find("above 1000"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"*a"})").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"type":"string","pattern":"[]"})").find("no character"), std::string::npos);
  EXPECT_EQ(ErrorOf(R"({"type":"string","pattern":"^a$","maxLength":3})"),
            "json schema: at #: 'pattern' next to 'maxLength' is not supported");
  EXPECT_EQ(ErrorOf(R"({"type":"string","pattern":3})"), "json schema: at #: 'pattern' must be a string");
}

// RegexToGbnf (guided_regex): raw text, matched whole; the same expression subset.
TEST(GrammarJsonSchema, RegexOverRawText) {
  auto re = [](const std::string& r) {
    auto g = RegexToGbnf(r);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? test_util::Gbnf(*g) : nullptr;
  };
  auto phone = re(R"(\(\d{3}\) \d{3}-\d{4})");
  EXPECT_TRUE(Matches(phone, "(555) 123-4567"));
  EXPECT_FALSE(Matches(phone, "x(555) 123-4567"));  // whole text, not anywhere
  EXPECT_FALSE(Matches(phone, "(555) 123-4567 "));
  auto raw = re(R"(^a"b\\c\n[é-ë]+$)");  // anchors redundant; nothing escaped: raw text
  EXPECT_TRUE(Matches(raw, "a\"b\\c\néë"));
  EXPECT_FALSE(Matches(raw, "a\\\"b\\\\c\\néë"));
  auto choice = re("(?:yes)|(?:no)|(?:maybe \\(later\\))");
  for (const char* ok : {"yes", "no", "maybe (later)"}) EXPECT_TRUE(Matches(choice, ok)) << ok;
  EXPECT_FALSE(Matches(choice, "yesno"));
  auto g = RegexToGbnf("a(?!b)");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(), "regex: lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not supported (at character 2)");
}

// A pattern whose automaton has many wide states (a long alternation of any-character
// runs, repeated), rebuilt from an openai_request_fuzz input that took 22.8 s (ASan) to
// reach the state limit. This form stays under that limit: without the step budget
// (GrammarLimits::max_determinize_steps) it compiles after ~1.9 s of determinization in a
// release build (session 30, this machine); with it, it fails in ~0.2 s.
TEST(GrammarJsonSchema, PatternOfManyWideStatesFailsFast) {
  // As JSON text: (?:a}...}.....}}}}}}}|b[^\\s\"]){0,3}x*?|\\u00e9.$
  const std::string pattern = "(?:a" + std::string(67, '}') + std::string(53, '.') + std::string(7, '}') +
                              "|b[^\\\\s\\\"]){0,3}x*?|\\\\u00e9.$";
  const std::string err = ErrorOf(R"({"type": "object", "properties": {"tag": {"pattern": ")" + pattern + R"("}}})");
  // The budget's message, not the state limit's (which it reached without the budget).
  EXPECT_EQ(err.rfind("grammar too large: determinizing it takes more than ", 0), 0u) << err;
}

TEST(GrammarJsonSchema, UnsupportedKeywordsAreErrors) {
  EXPECT_EQ(ErrorOf(R"({"type":"string","patternProperties":{}})"),
            "json schema: at #: unsupported keyword 'patternProperties'");
  EXPECT_EQ(ErrorOf(R"({"type":"object","properties":{"a":{"not":{}}}})"),
            "json schema: at #/properties/a: unsupported keyword 'not'");
  EXPECT_EQ(ErrorOf(R"({"type":"array","uniqueItems":true})"),
            "json schema: at #: unsupported keyword 'uniqueItems' (only false is accepted)");
  EXPECT_EQ(ErrorOf(R"({"minProperties":1})"), "json schema: at #: unsupported keyword 'minProperties'");
  EXPECT_EQ(ErrorOf(R"({"allOf":[{"type":"string"},{"maxLength":3}]})"),
            "json schema: at #: 'allOf' is supported with exactly one schema");
  EXPECT_EQ(ErrorOf(R"({"properties":{},"anyOf":[{}]})"), "json schema: at #: 'properties' next to 'anyOf' is not supported");
  EXPECT_EQ(ErrorOf(R"({"type":"object","anyOf":[{"$ref":"#"}]})"),
            "json schema: at #/anyOf/0: 'type' next to a '$ref' branch is not supported");
  EXPECT_EQ(ErrorOf(R"({"$ref":"http://example.com/s.json"})"),
            "json schema: at #: only local $ref ('#...') are supported, not 'http://example.com/s.json'");
  EXPECT_EQ(ErrorOf(R"({"$ref":"#/$defs/missing"})"), "json schema: at #: $ref '#/$defs/missing' points nowhere");
  EXPECT_EQ(ErrorOf(R"({"type":"strin"})"), "json schema: at #: unknown type 'strin'");
  EXPECT_EQ(ErrorOf("false"), "json schema: at #: the schema false matches nothing");
  EXPECT_EQ(ErrorOf(R"({"type":"integer","minimum":5,"maximum":4})"),
            "json schema: at #: no integer lies within minimum/maximum");
  EXPECT_EQ(ErrorOf(R"({"type":"string","maxLength":100000})"),
            "json schema: at #: 'maxLength' above 2000 is not supported");
  EXPECT_EQ(ErrorOf("{\"type\":"), "json schema: not valid JSON");
  EXPECT_EQ(ErrorOf(std::string(100, '[') + std::string(100, ']')), "json schema: nested deeper than 64 levels");
}

}  // namespace
}  // namespace rwkvx::grammar
