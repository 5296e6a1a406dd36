// bench_grammar_server: the cost of structured output on the server's path, per generated
// token and session, with the world vocabulary. A request's grammar is compiled the way
// the Service does it (StructuredOutputCompiler), and two ActiveRequests (the scheduler's
// per-request object) walk the same tokens (an instance of the schema, as the tokenizer
// encodes it): one constrained, one not. Per token each gets a logits row of the model's
// vocabulary (65,536 floats, the instance's token on top) and runs what the scheduler's
// loop runs: SampleRow (unspellable bans, the grammar's mask written into the row,
// sampling) and Emit (the matcher's Accept, detokenizing, the stream). The differences
// are what structured output adds to a step on the loop thread. Sessions:
//   cold   the first session of a process (the grammar's node tables are built on use);
//   warm   later sessions (tables cached; the grammar itself from the compiler's cache).
// Prints a table and writes JSON (--json). Timing only; never asserts on times.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/grammar/bench_cases.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/active_request.h"
#include "server/service/structured_output.h"
#include "tools/cli_args.h"

namespace {

using namespace rwkvx;
using namespace rwkvx::bench;
using Clock = std::chrono::steady_clock;

constexpr int kModelVocab = 65536;

double Us(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::micro>(b - a).count(); }
double Mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

struct Session {
  std::vector<double> sample_us, emit_us;  // constrained, per token
  std::vector<double> free_sample_us, free_emit_us;  // the same tokens, unconstrained
  bool ended_with_stop = false;
};

GenerateRequest Request(std::shared_ptr<const grammar::TokenGrammar> g) {
  GenerateRequest r;
  r.prompt = {1};
  r.max_tokens = 1 << 20;
  r.sampling.temperature = 0;  // the row's top token: the instance's
  r.grammar = std::move(g);
  return r;
}

Session RunSession(const Tokenizer& tok, std::shared_ptr<const grammar::TokenGrammar> g,
                   const std::vector<int32_t>& ids, const std::vector<float>& base,
                   const std::vector<int32_t>& unspellable, ServerMetrics* metrics) {
  ActiveRequest constrained(std::make_shared<RequestStream>(Request(std::move(g)), size_t{1} << 30), &tok);
  ActiveRequest free(std::make_shared<RequestStream>(Request(nullptr), size_t{1} << 30), &tok);
  std::vector<float> row(kModelVocab);
  Session s;
  for (size_t i = 0; i <= ids.size(); ++i) {
    const int32_t want = i < ids.size() ? ids[i] : tok.EndOfText();
    for (ActiveRequest* a : {&constrained, &free}) {
      std::copy(base.begin(), base.end(), row.begin());
      row[want] = 30.0f;
      auto t0 = Clock::now();
      SampleResult r = a->SampleRow(row.data(), kModelVocab, unspellable);
      auto t1 = Clock::now();
      if (r.token != want) {
        std::fprintf(stderr, "bench_grammar_server: step %zu drew %d, not %d\n", i, r.token, want);
        std::exit(1);
      }
      auto end = a->Emit(std::move(r), absl::Now(), metrics);
      auto t2 = Clock::now();
      (a == &constrained ? s.sample_us : s.free_sample_us).push_back(Us(t0, t1));
      (a == &constrained ? s.emit_us : s.free_emit_us).push_back(Us(t1, t2));
      if (a == &constrained && end) s.ended_with_stop = end->reason == FinishReason::kStop;
    }
    if (s.ended_with_stop) break;  // the grammar completed (or took end of text)
  }
  return s;
}

nlohmann::json Summary(const Session& s) {
  std::vector<double> mask(s.sample_us.size()), accept(s.emit_us.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = s.sample_us[i] - s.free_sample_us[i];
  for (size_t i = 0; i < accept.size(); ++i) accept[i] = s.emit_us[i] - s.free_emit_us[i];
  return {{"tokens", mask.size()},
          {"sample_constrained_mean_us", Mean(s.sample_us)},
          {"sample_free_mean_us", Mean(s.free_sample_us)},
          {"mask_added_mean_us", Mean(mask)},
          {"mask_added_p50_us", Pct(mask, 0.5)},
          {"mask_added_p99_us", Pct(mask, 0.99)},
          {"emit_added_mean_us", Mean(accept)},
          {"ended_with_stop", s.ended_with_stop}};
}

}  // namespace

int main(int argc, char** argv) {
  auto args = CliArgs::Parse(argc, argv, {"vocab", "json", "machine", "repeats"});
  if (!args.ok() || !args->Has("vocab")) {
    std::fprintf(stderr, "usage: bench_grammar_server --vocab rwkv_vocab_v20230424.txt [--json out.json] "
                         "[--machine TEXT] [--repeats 5]\n");
    return 2;
  }
  const int repeats = static_cast<int>(args->GetInt("repeats", 5, 1, 1000).value_or(5));
  auto tok = LoadWorldTokenizer(args->Get("vocab"));
  if (!tok.ok()) {
    std::fprintf(stderr, "bench_grammar_server: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  std::vector<int32_t> unspellable;  // as the scheduler computes them
  for (int32_t id = 1; id < kModelVocab; ++id)
    if (!(*tok)->IsKnown(id)) unspellable.push_back(id);
  std::vector<float> base(kModelVocab);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-5.0f, 5.0f);
  for (float& x : base) x = u(rng);
  ServerMetrics metrics;
  StructuredOutputCompiler compiler(tok->get());
  auto v0 = Clock::now();
  compiler.Vocabulary();  // built once per server, on the first structured request
  const double vocab_ms = Us(v0, Clock::now()) / 1000;
  std::printf("vocabulary built in %.1f ms (once per process)\n\n", vocab_ms);
  nlohmann::json out = {{"machine", args->Get("machine", "unnamed")}, {"model_vocab", kModelVocab},
                        {"vocab_build_ms", vocab_ms}, {"repeats", repeats}, {"cases", nlohmann::json::array()}};
  std::printf("| case | tokens | compile ms (first / cached) | cold: mask added mean us | warm: sample free / constrained mean us | warm: mask added mean / p50 / p99 us | warm: emit added mean us |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const BenchCase& c : kBenchCases) {
    OutputFormat f;
    f.kind = c.schema ? OutputFormat::Kind::kJsonSchema : OutputFormat::Kind::kJsonObject;
    f.text = c.schema ? c.schema : "";
    f.where = c.name;
    auto t0 = Clock::now();
    auto g = compiler.Compile(f);
    auto t1 = Clock::now();
    auto again = compiler.Compile(f);
    auto t2 = Clock::now();
    if (!g.ok() || !again.ok()) {
      std::fprintf(stderr, "bench_grammar_server: %s\n", std::string(g.status().message()).c_str());
      return 1;
    }
    const std::vector<int32_t> ids = (*tok)->Encode(c.instance);
    const Session cold = RunSession(**tok, *g, ids, base, unspellable, &metrics);
    std::vector<Session> warms;
    for (int i = 0; i < repeats; ++i) warms.push_back(RunSession(**tok, *again, ids, base, unspellable, &metrics));
    Session warm = warms[0];  // per token, the median over the repeats
    for (size_t k = 0; k < warm.sample_us.size(); ++k) {
      auto med = [&](std::vector<double> Session::*field) {
        std::vector<double> v;
        for (const Session& w : warms) v.push_back((w.*field)[k]);
        return Pct(v, 0.5);
      };
      warm.sample_us[k] = med(&Session::sample_us);
      warm.free_sample_us[k] = med(&Session::free_sample_us);
      warm.emit_us[k] = med(&Session::emit_us);
      warm.free_emit_us[k] = med(&Session::free_emit_us);
    }
    const nlohmann::json cs = Summary(cold), ws = Summary(warm);
    out["cases"].push_back({{"name", c.name}, {"compile_first_ms", Us(t0, t1) / 1000},
                            {"compile_cached_ms", Us(t1, t2) / 1000}, {"cold", cs}, {"warm", ws}});
    std::printf("| %s | %d | %.2f / %.3f | %.0f | %.0f / %.0f | %.1f / %.1f / %.1f | %.1f |\n", c.name,
                ws["tokens"].get<int>(), Us(t0, t1) / 1000, Us(t1, t2) / 1000, cs["mask_added_mean_us"].get<double>(),
                ws["sample_free_mean_us"].get<double>(), ws["sample_constrained_mean_us"].get<double>(),
                ws["mask_added_mean_us"].get<double>(), ws["mask_added_p50_us"].get<double>(),
                ws["mask_added_p99_us"].get<double>(), ws["emit_added_mean_us"].get<double>());
  }
  if (args->Has("json")) std::ofstream(args->Get("json")) << out.dump(1) << "\n";
  return 0;
}
