// libFuzzer target for the grammar engine (engine/sampling/grammar/*.cc, the tokenizer
// sources for vocabulary.cc). Single-threaded.
//
// The first byte picks what the rest of the input is:
//   even: GBNF text for CompileGbnf;
//   odd:  a JSON schema for JsonSchemaToGbnf, whose output (when it succeeds) must always
//         be valid GBNF: a syntax error in it is a compiler bug.
// Every error must say something. When a grammar compiles, a matcher walks it on a small
// vocabulary for a few steps, choosing tokens with the first byte's other bits: at each
// step the mask must equal Accept on a copy of the matcher, token by token, and
// Rollback/fork must give back the same masks.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/matcher.h"

namespace {

using namespace rwkvx::grammar;

#define FUZZ_CHECK(c)             \
  do {                            \
    if (!(c)) __builtin_trap();   \
  } while (0)

std::shared_ptr<const TokenVocabulary> Vocab() {
  static auto v = [] {
    std::vector<std::string> t;
    for (const char* s : {"{", "}", "[", "]", "\"", ",", ":", "0", "1", "9", "-", ".", "e", "a", "b", "x", " ",
                          "\\", "n", "u", "true", "false", "null", "\"a\"", "\":", "\",\"", "\"}", "}]", "ab",
                          "\xc3", "\xa9", "\xc3\xa9", "12", "\n", "()", "(", ")", "*", "#"}) {
      t.push_back(s);
    }
    return TokenVocabulary::FromTokens(t);
  }();
  return v;
}

std::vector<uint32_t> Mask(GrammarMatcher& m) {
  std::vector<uint32_t> w(m.token_grammar().vocab().mask_words());
  m.FillMask(w.data());
  return w;
}

void Walk(const std::shared_ptr<const Grammar>& g, uint32_t seed) {
  auto tg = TokenGrammar::Bind(g, Vocab());
  GrammarMatcher m(tg);
  const int n = tg->vocab().vocab_size();
  for (int step = 0; step < 6 && !m.IsTerminated(); ++step) {
    const std::vector<uint32_t> w = Mask(m);
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < n; ++id) {
      GrammarMatcher copy = m;
      const bool bit = (w[id >> 5] >> (id & 31)) & 1;
      FUZZ_CHECK(copy.Accept(id) == bit);
      if (bit) allowed.push_back(id);
    }
    FUZZ_CHECK(((w[0] & 1) != 0) == m.IsComplete());
    if (allowed.empty()) break;
    const int32_t t = allowed[(seed >> (step * 3)) % allowed.size()];
    GrammarMatcher fork = m;
    FUZZ_CHECK(m.Accept(t));
    if (step % 2 == 1) {  // undo and redo: the same mask as before
      FUZZ_CHECK(m.Rollback(1));
      FUZZ_CHECK(Mask(m) == w);
      FUZZ_CHECK(m.Accept(t));
    }
    FUZZ_CHECK(Mask(fork) == w);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  GrammarLimits limits;  // keep each input cheap
  limits.max_nfa_states = 20000;
  limits.max_dfa_states = 20000;
  limits.max_repeat = 200;
  limits.max_expansion_entries = 50000;
  std::shared_ptr<const Grammar> g;
  if (data[0] % 2 == 0) {
    auto r = CompileGbnf(text, limits);
    if (!r.ok()) {
      FUZZ_CHECK(!r.status().message().empty());
      return 0;
    }
    g = *r;
  } else {
    JsonSchemaOptions opts;
    opts.max_length_bound = 50;
    opts.limits = limits;
    auto gbnf = JsonSchemaToGbnf(text, opts);
    if (!gbnf.ok()) {
      FUZZ_CHECK(!gbnf.status().message().empty());
      return 0;
    }
    auto r = CompileGbnf(*gbnf, limits);
    if (!r.ok()) {
      // What a schema can legitimately produce: cycles of $ref, sizes, nothing to match.
      const std::string msg(r.status().message());
      FUZZ_CHECK(msg.find("grammar: line") == std::string::npos);
      return 0;
    }
    g = *r;
  }
  Walk(g, data[0] >> 1);
  return 0;
}
