// bench_grammar: the cost of grammar-constrained decoding on the world vocabulary, per
// schema: compile time (JSON schema -> grammar, bind to the vocabulary) and the cost of
// one session's allowed-token mask per generated token (FillMask) plus Accept, while the
// session writes an instance of the schema token by token (the tokenizer's encoding of
// it). Three runs per schema:
//   cold      a fresh vocabulary cache: the first session builds the per-node tables;
//   warm      a second session: tables cached, the session's own mask cache on;
//   uncached  tables cached, the session's mask cache off (every mask recomputed).
// Prints a table and writes JSON (--json). Timing only; never asserts on times.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampling/grammar/json_schema.h"
#include "engine/sampling/grammar/matcher.h"
#include "bench/grammar/bench_cases.h"
#include "engine/tokenizer/tokenizer.h"
#include "tools/cli_args.h"

namespace {

using namespace rwkvx;
using namespace rwkvx::grammar;
using namespace rwkvx::bench;
using Clock = std::chrono::steady_clock;

double Us(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }

struct Run {
  std::vector<double> mask_us, accept_us;
  GrammarMatcher::Stats stats;
};

Run Generate(const std::shared_ptr<const TokenGrammar>& tg, const std::vector<int32_t>& ids, int cache_entries) {
  MatcherOptions opts;
  opts.mask_cache_entries = cache_entries;
  GrammarMatcher m(tg, opts);
  std::vector<uint32_t> words(tg->vocab().mask_words());
  Run r;
  for (size_t i = 0; i <= ids.size(); ++i) {
    const int32_t t = i < ids.size() ? ids[i] : 0;  // then the end of text
    auto a = Clock::now();
    m.FillMask(words.data());
    auto b = Clock::now();
    if (!((words[t >> 5] >> (t & 31)) & 1)) {
      std::fprintf(stderr, "bench_grammar: token %d not allowed at step %zu\n", t, i);
      std::exit(1);
    }
    if (!m.Accept(t)) std::exit(1);
    auto c = Clock::now();
    r.mask_us.push_back(Us(a, b));
    r.accept_us.push_back(Us(b, c));
  }
  r.stats = m.stats();
  return r;
}

double Mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

nlohmann::json Summary(const Run& r) {
  return {{"mask_mean_us", Mean(r.mask_us)}, {"mask_p50_us", Pct(r.mask_us, 0.5)},
          {"mask_p99_us", Pct(r.mask_us, 0.99)}, {"mask_max_us", Pct(r.mask_us, 1.0)},
          {"accept_mean_us", Mean(r.accept_us)}, {"masks_from_session_cache", r.stats.cached_masks},
          {"uncertain_checks", r.stats.uncertain_checks}};
}

}  // namespace

int main(int argc, char** argv) {
  auto args = CliArgs::Parse(argc, argv, {"vocab", "json", "machine", "repeats"});
  if (!args.ok() || !args->Has("vocab")) {
    std::fprintf(stderr, "usage: bench_grammar --vocab rwkv_vocab_v20230424.txt [--json out.json] "
                         "[--machine TEXT] [--repeats 5]\n");
    return 2;
  }
  const int repeats = static_cast<int>(args->GetInt("repeats", 5, 1, 1000).value_or(5));
  auto tok = LoadWorldTokenizer(args->Get("vocab"));
  if (!tok.ok()) {
    std::fprintf(stderr, "bench_grammar: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  auto t0 = Clock::now();
  auto vocab = TokenVocabulary::Build(**tok);
  const double vocab_ms = Us(t0, Clock::now()) / 1000;
  nlohmann::json out = {{"machine", args->Get("machine", "unnamed")}, {"vocab_size", vocab->vocab_size()},
                        {"trie_nodes", vocab->trie().size()}, {"vocab_build_ms", vocab_ms}, {"cases", nlohmann::json::array()}};
  std::printf("vocabulary: %d tokens, %zu trie nodes, built in %.1f ms\n\n", vocab->vocab_size(), vocab->trie().size(), vocab_ms);
  std::printf("| case | tokens | compile ms | cold: all masks ms | cold: mask mean / p99 / max us | warm: mask mean / p50 / p99 us | uncached: mask mean / p50 / p99 us | accept mean us |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const BenchCase& c : kBenchCases) {
    std::vector<double> compile_ms;
    std::shared_ptr<const Grammar> g;
    for (int i = 0; i < repeats; ++i) {
      auto a = Clock::now();
      if (c.schema) {
        auto r = CompileJsonSchema(c.schema);
        if (!r.ok()) {
          std::fprintf(stderr, "bench_grammar: %s: %s\n", c.name, std::string(r.status().message()).c_str());
          return 1;
        }
        g = *r;
      } else {
        auto r = CompileGbnf(JsonObjectGbnf());
        g = *r;
      }
      compile_ms.push_back(Us(a, Clock::now()) / 1000);
    }
    const std::vector<int32_t> ids = (*tok)->Encode(c.instance);
    // Cold: a vocabulary with an empty table cache.
    auto cold_vocab = TokenVocabulary::Build(**tok);
    auto a = Clock::now();
    auto cold_tg = TokenGrammar::Bind(g, cold_vocab);
    const double bind_us = Us(a, Clock::now());
    const Run cold = Generate(cold_tg, ids, 8);
    // Warm and uncached: the tables exist (from a first session on `vocab`).
    auto tg = TokenGrammar::Bind(g, vocab);
    Generate(tg, ids, 8);
    Run warm, uncached;
    std::vector<Run> warms, uncacheds;
    for (int i = 0; i < repeats; ++i) {
      warms.push_back(Generate(tg, ids, 8));
      uncacheds.push_back(Generate(tg, ids, 0));
    }
    // Per token, the median over the repeats.
    auto median_run = [&](const std::vector<Run>& runs) {
      Run r = runs[0];
      for (size_t k = 0; k < r.mask_us.size(); ++k) {
        std::vector<double> m, ac;
        for (const auto& x : runs) {
          m.push_back(x.mask_us[k]);
          ac.push_back(x.accept_us[k]);
        }
        r.mask_us[k] = Pct(m, 0.5);
        r.accept_us[k] = Pct(ac, 0.5);
      }
      return r;
    };
    warm = median_run(warms);
    uncached = median_run(uncacheds);
    const double compile = Pct(compile_ms, 0.5);
    std::printf("| %s | %zu | %.2f | %.1f | %.0f / %.0f / %.0f | %.1f / %.1f / %.0f | %.1f / %.1f / %.0f | %.1f |\n", c.name,
                ids.size() + 1, compile, Mean(cold.mask_us) * cold.mask_us.size() / 1000, Mean(cold.mask_us), Pct(cold.mask_us, 0.99), Pct(cold.mask_us, 1.0),
                Mean(warm.mask_us), Pct(warm.mask_us, 0.5), Pct(warm.mask_us, 0.99), Mean(uncached.mask_us),
                Pct(uncached.mask_us, 0.5), Pct(uncached.mask_us, 0.99), Mean(warm.accept_us));
    out["cases"].push_back({{"name", c.name}, {"tokens", ids.size() + 1}, {"compile_ms", compile},
                            {"bind_us", bind_us}, {"grammar_nodes", g->nodes.size()}, {"rules", g->rules.size()},
                            {"cold", Summary(cold)}, {"warm", Summary(warm)}, {"uncached", Summary(uncached)}});
  }
  if (args->Has("json")) {
    std::ofstream f(args->Get("json"));
    f << out.dump(1) << "\n";
  }
  return 0;
}
