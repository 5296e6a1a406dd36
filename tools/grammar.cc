// `rwkvx grammar`: compile grammars (GBNF or JSON schema) and run the matcher on texts,
// for people and for the tests in tests/grammar/. Runs once on the main thread.
//
//   rwkvx grammar [--vocab FILE] [--in FILE] [--out FILE]     (FILE "-" = stdin / stdout)
//
// One JSON request per input line, one JSON answer per output line:
//   in:  {"gbnf": "root ::= ..."} | {"schema": <schema object or its text>} | {"json_object": true}
//        plus any of
//        "texts": ["...", ...]   each matched from the start:
//                                {"accepted": every byte can be consumed, "complete": the
//                                 grammar may end there}; an instance is valid iff both.
//        "masks": ["...", ...]   the allowed-token mask after each prefix (needs --vocab):
//                                {"accepted": ..., "complete": ..., "allowed": count,
//                                 "hex": the mask words, little-endian bytes in hex}
//        "walk": "..."           the text encoded with the vocabulary's tokenizer, then
//                                accepted token by token (needs --vocab):
//                                {"ids": [...], "hex": [the mask before each token and
//                                 after the last], "accepted": all tokens taken}
//        "print_gbnf": true      the generated GBNF as "gbnf"
//   out: {"ok": true, "texts": [...], "masks": [...], "walk": {...}, "gbnf": "..."} or
//        {"ok": false, "error": "..."}
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tools/cli_args.h"
#include "tools/subcommands.h"

namespace rwkvx {
namespace {

using json = nlohmann::ordered_json;  // keeps a schema's property order
using namespace rwkvx::grammar;

std::string WordsHex(const std::vector<uint32_t>& words) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (uint32_t w : words) {
    for (int b = 0; b < 4; ++b) {
      const unsigned char c = (w >> (8 * b)) & 0xFF;
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

size_t FillAndCount(GrammarMatcher& m, std::vector<uint32_t>* words) {
  m.FillMask(words->data());
  size_t n = 0;
  for (uint32_t w : *words) n += __builtin_popcount(w);
  return n;
}

json Answer(const json& req, const Tokenizer* tok, const std::shared_ptr<const TokenVocabulary>& vocab) {
  std::shared_ptr<const Grammar> g;
  std::string gbnf;
  if (req.contains("gbnf") && req["gbnf"].is_string()) {
    gbnf = req["gbnf"].get<std::string>();
  } else if (req.contains("schema")) {
    const std::string text = req["schema"].is_string() ? req["schema"].get<std::string>() : req["schema"].dump();
    auto r = JsonSchemaToGbnf(text);
    if (!r.ok()) return {{"ok", false}, {"error", std::string(r.status().message())}};
    gbnf = *r;
  } else if (req.value("json_object", false)) {
    gbnf = JsonObjectGbnf();
  } else {
    return {{"ok", false}, {"error", "expected \"gbnf\", \"schema\" or \"json_object\""}};
  }
  auto compiled = CompileGbnf(gbnf);
  if (!compiled.ok()) return {{"ok", false}, {"error", std::string(compiled.status().message())}};
  // Without a vocabulary, texts are matched byte by byte (a one-token vocabulary).
  auto v = vocab ? vocab : TokenVocabulary::FromTokens({"\x01"});
  auto tg = TokenGrammar::Bind(*compiled, v);
  json out = {{"ok", true}};
  if (req.value("print_gbnf", false)) out["gbnf"] = gbnf;
  if (req.contains("texts")) {
    json results = json::array();
    for (const auto& t : req["texts"]) {
      GrammarMatcher m(tg);
      const bool accepted = t.is_string() && m.AcceptBytes(t.get<std::string>());
      results.push_back({{"accepted", accepted}, {"complete", accepted && m.IsComplete()}});
    }
    out["texts"] = results;
  }
  if (req.contains("masks")) {
    if (!vocab) return {{"ok", false}, {"error", "\"masks\" needs --vocab"}};
    json results = json::array();
    std::vector<uint32_t> words(vocab->mask_words());
    for (const auto& t : req["masks"]) {
      GrammarMatcher m(tg);
      const bool accepted = t.is_string() && m.AcceptBytes(t.get<std::string>());
      json r = {{"accepted", accepted}, {"complete", accepted && m.IsComplete()}};
      if (accepted) {
        r["allowed"] = FillAndCount(m, &words);
        r["hex"] = WordsHex(words);
      }
      results.push_back(r);
    }
    out["masks"] = results;
  }
  if (req.contains("walk") && req["walk"].is_string()) {
    if (!vocab) return {{"ok", false}, {"error", "\"walk\" needs --vocab"}};
    const std::vector<int32_t> ids = tok->Encode(req["walk"].get<std::string>());
    std::vector<uint32_t> words(vocab->mask_words());
    GrammarMatcher m(tg);
    json hex = json::array();
    bool all = true;
    for (size_t i = 0; i <= ids.size(); ++i) {
      FillAndCount(m, &words);
      hex.push_back(WordsHex(words));
      if (i == ids.size()) break;
      if (!m.Accept(ids[i])) {
        all = false;
        break;
      }
    }
    out["walk"] = {{"ids", ids}, {"hex", hex}, {"accepted", all}};
  }
  return out;
}

}  // namespace

int GrammarMain(int argc, char** argv) {
  auto args = CliArgs::Parse(argc, argv, {"vocab", "in", "out"});
  if (!args.ok()) {
    std::fprintf(stderr, "rwkvx grammar: %s\nusage: rwkvx grammar [--vocab FILE] [--in FILE] [--out FILE]\n",
                 std::string(args.status().message()).c_str());
    return 2;
  }
  std::shared_ptr<const TokenVocabulary> vocab;
  std::unique_ptr<Tokenizer> tok;
  if (args->Has("vocab")) {
    auto t = LoadWorldTokenizer(args->Get("vocab"));
    if (!t.ok()) {
      std::fprintf(stderr, "rwkvx grammar: %s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    tok = std::move(*t);
    vocab = TokenVocabulary::Build(*tok);
  }
  std::ifstream fin;
  std::istream* in = &std::cin;
  if (args->Get("in", "-") != "-") {
    fin.open(args->Get("in"));
    if (!fin) {
      std::fprintf(stderr, "rwkvx grammar: cannot open %s\n", args->Get("in").c_str());
      return 1;
    }
    in = &fin;
  }
  std::ofstream fout;
  std::ostream* out = &std::cout;
  if (args->Get("out", "-") != "-") {
    fout.open(args->Get("out"));
    out = &fout;
  }
  std::string line;
  while (std::getline(*in, line)) {
    if (line.empty()) continue;
    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    json ans = req.is_object() ? Answer(req, tok.get(), vocab) : json{{"ok", false}, {"error", "not a JSON object"}};
    *out << ans.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
  }
  return 0;
}

}  // namespace rwkvx
