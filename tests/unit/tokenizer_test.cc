// Tokenizer unit tests: Python literal parser, vocabulary errors, world tokenizer on the
// real vocabulary (skipped when it is absent), byte tokenizer, UTF-8 helpers, StreamDecoder.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_vocab.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "tests/unit/vocab_path.h"

namespace rwkvx {
namespace {

std::string VocabPath() { return TestWorldVocabPath(); }

const Tokenizer* World() {
  static const Tokenizer* tok = [] {
    auto t = LoadWorldTokenizer(VocabPath());
    return t.ok() ? t->release() : nullptr;
  }();
  return tok;
}

#define REQUIRE_WORLD()                                                      \
  if (World() == nullptr) GTEST_SKIP() << "vocabulary not found at " << VocabPath()

std::string Lit(std::string_view s) {
  auto r = ParsePythonLiteral(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status();
  return r.ok() ? *r : std::string("<error>");
}

TEST(PythonLiteral, Escapes) {
  EXPECT_EQ(Lit("'abc'"), "abc");
  EXPECT_EQ(Lit("\"it's\""), "it's");
  EXPECT_EQ(Lit("'\\'\\\"\\\\'"), "'\"\\");
  EXPECT_EQ(Lit("'\\n\\t\\r\\a\\b\\f\\v'"), "\n\t\r\a\b\f\v");
  EXPECT_EQ(Lit("'\\x00\\x41'"), std::string("\0A", 2));
  EXPECT_EQ(Lit("'\\xe9'"), "\xC3\xA9");    // str: U+00E9 as UTF-8
  EXPECT_EQ(Lit("b'\\xe9'"), "\xE9");       // bytes: the byte itself
  EXPECT_EQ(Lit("'\\u200b'"), "\xE2\x80\x8B");
  EXPECT_EQ(Lit("'\\U0001F600'"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(Lit("'\\101\\0\\7'"), std::string("A\0\a", 3));
  EXPECT_EQ(Lit("'\\$\\q'"), "\\$\\q");     // unknown escapes keep the backslash
  EXPECT_EQ(Lit("b'\\u00e9'"), "\\u00e9");  // \u is not an escape in bytes
  EXPECT_EQ(Lit("'h\xC3\xA9'"), "h\xC3\xA9");
  EXPECT_EQ(Lit("B\"x\""), "x");
}

TEST(PythonLiteral, Rejects) {
  for (const char* bad : {"abc", "'abc", "'abc'x", "r'abc'", "'''a'''", "'\\x4'", "'\\u12'",
                          "'\\ud800'", "'\\U00110000'", "b'\xC3\xA9'", "'\\N{DASH}'", "'a\\",
                          "'\xFF'"}) {
    EXPECT_FALSE(ParsePythonLiteral(bad).ok()) << bad;
  }
}

TEST(Vocab, ErrorsNameTheLine) {
  auto r = ParseVocab("1 'a' 1\n2 'bc' 3\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string_view::npos) << r.status();
  r = ParseVocab("1 'a' 1\n\n3 'a 1\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 3"), std::string_view::npos) << r.status();
  EXPECT_FALSE(ParseVocab("1 'a' 1\n1 'b' 1\n").ok());  // duplicate id
  EXPECT_FALSE(ParseVocab("x 'a' 1\n").ok());
  EXPECT_FALSE(ParseVocab("0 'a' 1\n").ok());            // 0 is end of text
  EXPECT_FALSE(ParseVocab("1 'a'\n").ok());
  EXPECT_FALSE(ParseVocab("").ok());
  auto ok = ParseVocab("1 'a b' 3\r\n2 b'\\xff' 1\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)[0].bytes, "a b");
  EXPECT_EQ((*ok)[1].bytes, "\xFF");
}

TEST(Vocab, LoadFailsWithoutAllBytesOrFile) {
  const std::string path = testing::TempDir() + "/tiny_vocab.txt";
  std::ofstream(path) << "1 'a' 1\n2 'ab' 2\n";
  auto t = LoadWorldTokenizer(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("0x00"), std::string_view::npos) << t.status();
  EXPECT_FALSE(LoadWorldTokenizer(path + ".missing").ok());
}

TEST(Vocab, TinyVocabGreedyLongestMatch) {
  const std::string path = testing::TempDir() + "/small_vocab.txt";
  {
    std::ofstream f(path);
    for (int b = 0; b < 256; ++b) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%d b'\\x%02x' 1\n", b + 1, b);
      f << buf;
    }
    f << "300 'ab' 2\n301 'abcd' 4\n302 'bcde' 4\n";
  }
  auto t = LoadWorldTokenizer(path);
  ASSERT_TRUE(t.ok()) << t.status();
  const Tokenizer& tok = **t;
  EXPECT_EQ(tok.VocabSize(), 303);
  // "abcde": longest at 0 is "abcd", then "e" (not "ab" + "cde" or "a" + "bcde").
  EXPECT_EQ(tok.Encode("abcde"), (std::vector<int32_t>{301, 'e' + 1}));
  EXPECT_EQ(tok.Encode("abc"), (std::vector<int32_t>{300, 'c' + 1}));
  EXPECT_EQ(tok.Encode(""), std::vector<int32_t>{});
  EXPECT_FALSE(tok.IsKnown(0));
  EXPECT_FALSE(tok.IsKnown(299));
  EXPECT_EQ(tok.TokenBytes(299), "");
  EXPECT_EQ(tok.DecodeBytes({301, 0, 299, 5000, -3, 302}), "abcdbcde");
}

TEST(WorldTokenizer, KnownEncodings) {
  REQUIRE_WORLD();
  const Tokenizer& tok = *World();
  EXPECT_EQ(tok.Name(), "world");
  EXPECT_EQ(tok.VocabSize(), 65530);
  EXPECT_EQ(tok.TokenBytes(1), std::string("\0", 1));
  EXPECT_EQ(tok.TokenBytes(256), "\xFF");
  EXPECT_EQ(tok.TokenBytes(261), "\n\n");
  EXPECT_EQ(tok.Encode("\n\n"), std::vector<int32_t>{261});
  EXPECT_EQ(tok.TokenBytes(65529), std::string(128, ' '));
  // Every single byte encodes to byte + 1 on its own.
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(tok.Encode(std::string(1, static_cast<char>(b))), std::vector<int32_t>{b + 1});
  }
}

TEST(WorldTokenizer, EveryTokenRoundTrips) {
  REQUIRE_WORLD();
  const Tokenizer& tok = *World();
  int known = 0;
  for (int id = 1; id < tok.VocabSize(); ++id) {
    ASSERT_TRUE(tok.IsKnown(id)) << id;
    ++known;
    const std::string b(tok.TokenBytes(id));
    ASSERT_EQ(tok.Encode(b), std::vector<int32_t>{id}) << id;
  }
  EXPECT_EQ(known, 65529);
}

TEST(WorldTokenizer, ArbitraryBytesRoundTrip) {
  REQUIRE_WORLD();
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = static_cast<char>(rng() % (trial % 2 ? 256 : 128));
    EXPECT_EQ(World()->DecodeBytes(World()->Encode(s)), s);
  }
}

TEST(ByteTokenizer, Basics) {
  auto tok = MakeByteTokenizer();
  EXPECT_EQ(tok->Name(), "bytes");
  EXPECT_EQ(tok->VocabSize(), 257);
  EXPECT_EQ(tok->Encode(std::string("\0A\xFF", 3)), (std::vector<int32_t>{1, 66, 256}));
  EXPECT_EQ(tok->DecodeBytes({1, 66, 0, 257, -1, 256}), std::string("\0A\xFF", 3));
  EXPECT_FALSE(tok->IsKnown(0));
  EXPECT_TRUE(tok->IsKnown(256));
  EXPECT_EQ(tok->TokenBytes(66), "A");
}

TEST(Utf8, PrefixAndValidity) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));           // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));       // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));   // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\x80"));       // overlong 3-byte
  EXPECT_EQ(ValidUtf8Prefix("ab\xE2\x82"), 2u);
  EXPECT_EQ(ValidUtf8Prefix("ab\xFF" "cd"), 2u);
}

TEST(Utf8, ReplacementOfMaximalSubparts) {
  const std::string R(kUtf8Replacement);
  EXPECT_EQ(ReplaceInvalidUtf8("\xE2\x82" "A"), R + "A");
  EXPECT_EQ(ReplaceInvalidUtf8("\xED\xA0\x80"), R + R + R);
  EXPECT_EQ(ReplaceInvalidUtf8("\xF0\x9F\x98"), R);
  EXPECT_EQ(ReplaceInvalidUtf8("\xF0\x80"), R + R);
  EXPECT_EQ(ReplaceInvalidUtf8("\xC3" "\xC3\xA9"), R + "\xC3\xA9");
  size_t held = 9;
  EXPECT_EQ(ReplaceInvalidUtf8("a\xF0\x9F\x98", false, &held), "a");
  EXPECT_EQ(held, 3u);
}

// Pushing the bytes in any split must give the one-shot replacement decode.
TEST(StreamDecoder, AnySplitEqualsOneShot) {
  auto tok = MakeByteTokenizer();
  std::mt19937 rng(11);
  const std::string pieces[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xFF",
                                "\xC0", "\xED\xA0", "\x80", "\xF0\x9F", "\xE2"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    const int n = rng() % 12;
    for (int i = 0; i < n; ++i) s += pieces[rng() % std::size(pieces)];
    StreamDecoder dec(tok.get());
    std::string out;
    for (int32_t id : tok->Encode(s)) {
      const std::string chunk = dec.Push(id);
      ASSERT_TRUE(IsValidUtf8(chunk));
      out += chunk;
    }
    out += dec.Flush();
    ASSERT_EQ(out, ReplaceInvalidUtf8(s)) << trial;
  }
}

TEST(StreamDecoder, HoldsBackIncompleteTail) {
  auto tok = MakeByteTokenizer();
  StreamDecoder dec(tok.get());
  EXPECT_EQ(dec.Push(0xF0 + 1), "");
  EXPECT_EQ(dec.Push(0x9F + 1), "");
  EXPECT_EQ(dec.Push(0x98 + 1), "");
  EXPECT_EQ(dec.Push(0x80 + 1), "\xF0\x9F\x98\x80");
  EXPECT_EQ(dec.Push(0xE2 + 1), "");
  EXPECT_EQ(dec.Push('x' + 1), std::string(kUtf8Replacement) + "x");  // can never complete
  EXPECT_EQ(dec.Push(0xE2 + 1), "");
  EXPECT_EQ(dec.Push(0), "");  // end of text contributes nothing
  EXPECT_EQ(dec.Flush(), kUtf8Replacement);
  EXPECT_EQ(dec.Flush(), "");
}

}  // namespace
}  // namespace rwkvx
