// libFuzzer target for the tokenizer layer on arbitrary bytes. Single-threaded.
// Needs engine/tokenizer/utf8.cc, tokenizer.cc, tokenizer_vocab.cc, tokenizer_world.cc, sampler.cc.
//
// The first byte picks what the rest of the input is fed to:
//   0: Encode/DecodeBytes/StreamDecoder with the byte tokenizer and, when the vocabulary is
//      found (RWKVX_VOCAB, else ../shared/data/rwkv_vocab_v20230424.txt from the working
//      directory or its parent), the world tokenizer. Checks: DecodeBytes(Encode(x)) == x,
//      every id is known, StreamDecoder output is valid UTF-8 and equals the one-shot
//      replacement decode, ValidUtf8Prefix agrees with ClassifyUtf8.
//   1: ParsePythonLiteral; what it accepts as a str literal is valid UTF-8.
//   2: ParseVocab; accepted entries have ids >= 1 and non-empty bytes.
//   3: Sampler on logits taken from the input (NaN/Inf included) with parameters from its
//      first bytes: the token is in range and not banned unless everything is.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_vocab.h"
#include "engine/tokenizer/utf8.h"

namespace {

using namespace rwkvx;

#define FUZZ_CHECK(c) \
  do {                \
    if (!(c)) __builtin_trap(); \
  } while (0)

const Tokenizer* WorldOrNull() {
  static const Tokenizer* tok = [] () -> const Tokenizer* {
    std::vector<std::string> paths;
    if (const char* v = std::getenv("RWKVX_VOCAB")) paths.push_back(v);
    paths.push_back("../shared/data/rwkv_vocab_v20230424.txt");
    paths.push_back("../../shared/data/rwkv_vocab_v20230424.txt");
    for (const auto& p : paths) {
      auto t = LoadWorldTokenizer(p);
      if (t.ok()) return t->release();
    }
    return nullptr;
  }();
  return tok;
}

void CheckTokenizer(const Tokenizer& tok, std::string_view s) {
  const std::vector<int32_t> ids = tok.Encode(s);
  for (int32_t id : ids) FUZZ_CHECK(tok.IsKnown(id) && id < tok.VocabSize());
  FUZZ_CHECK(tok.DecodeBytes(ids) == s);
  StreamDecoder dec(&tok);
  std::string streamed;
  for (int32_t id : ids) {
    std::string chunk = dec.Push(id);
    FUZZ_CHECK(IsValidUtf8(chunk));
    streamed += chunk;
  }
  streamed += dec.Flush();
  const std::string once = ReplaceInvalidUtf8(s);
  FUZZ_CHECK(IsValidUtf8(once));
  FUZZ_CHECK(streamed == once);
  FUZZ_CHECK(IsValidUtf8(s) == (once == s));
}

void CheckUtf8(std::string_view s) {
  const size_t p = ValidUtf8Prefix(s);
  FUZZ_CHECK(p <= s.size());
  FUZZ_CHECK(IsValidUtf8(s.substr(0, p)));
  if (p < s.size()) {
    size_t len = 0;
    FUZZ_CHECK(ClassifyUtf8(s.substr(p), &len) != Utf8Seq::kValid);
    FUZZ_CHECK(len >= 1 && len <= 3);
  }
}

void CheckSampler(std::string_view s) {
  if (s.size() < 8) return;
  const auto* b = reinterpret_cast<const uint8_t*>(s.data());
  SamplingParams p;
  p.temperature = (b[0] % 5) * 0.5f;                 // 0 (greedy) .. 2
  p.top_p = (b[1] % 11) * 0.1f;                       // 0 .. 1
  p.top_k = b[2] % 8;
  p.presence_penalty = (b[3] % 4) * 0.3f;
  p.frequency_penalty = (b[4] % 4) * 0.3f;
  p.top_logprobs = b[5] % 22;
  p.seed = b[6];
  if (b[7] & 1) p.banned_tokens = {0, 1};
  s.remove_prefix(8);
  const int vocab = static_cast<int>(s.size() / sizeof(float));
  if (vocab == 0) return;
  std::vector<float> logits(vocab);
  std::memcpy(logits.data(), s.data(), vocab * sizeof(float));
  Sampler sampler(p, nullptr);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> l = logits;
    const SampleResult r = sampler.Sample(l.data(), vocab);
    FUZZ_CHECK(r.token >= 0 && r.token < vocab);
    FUZZ_CHECK(!std::isnan(r.logprob) && r.logprob <= 1e-3f);
    FUZZ_CHECK(static_cast<int>(r.top.size()) <= 20);
    for (const auto& t : r.top) FUZZ_CHECK(t.token >= 0 && t.token < vocab && !std::isnan(t.logprob));
    sampler.Accept(r.token);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view s(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      CheckUtf8(s);
      static const std::unique_ptr<Tokenizer> bytes = MakeByteTokenizer();
      CheckTokenizer(*bytes, s);
      if (const Tokenizer* w = WorldOrNull()) CheckTokenizer(*w, s);
      break;
    }
    case 1: {
      auto r = ParsePythonLiteral(s);
      if (r.ok() && !s.empty() && s[0] != 'b' && s[0] != 'B') FUZZ_CHECK(IsValidUtf8(*r));
      break;
    }
    case 2: {
      auto r = ParseVocab(s);
      if (r.ok()) {
        for (const auto& e : *r) FUZZ_CHECK(e.id >= 1 && !e.bytes.empty());
      } else {
        FUZZ_CHECK(!r.status().message().empty());
      }
      break;
    }
    case 3:
      CheckSampler(s);
      break;
  }
  return 0;
}
