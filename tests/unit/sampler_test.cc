// Sampler tests: reproducibility, exclusion by top-k/top-p, chi-square goodness of fit to
// the package's distribution (fixed seeds: deterministic), penalties against a direct
// computation of the package's formula, greedy, temperature vs entropy, non-finite logits.
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace rwkvx {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> RandomLogits(int v, uint32_t seed, float scale = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> l(v);
  for (auto& x : l) x = d(rng);
  return l;
}

// The package's sample_logits distribution, written out directly in double precision:
// softmax, cutoff = sorted_probs[argmax(cumsum >= top_p)], probs < cutoff -> 0, keep the
// top_k largest (lower id first among equals), probs ** (1/T), normalise.
std::vector<double> PackageDistribution(const std::vector<float>& logits, float temperature,
                                        float top_p, int top_k) {
  const int v = static_cast<int>(logits.size());
  double mx = -1e300;
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  std::vector<double> p(v);
  double s = 0;
  for (int i = 0; i < v; ++i) s += p[i] = std::exp(logits[i] - mx);
  for (auto& x : p) x /= s;
  std::vector<int> ids(v);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return p[a] > p[b]; });
  if (top_p < 1.0f) {
    double cum = 0, cutoff = 0;
    for (int j = 0; j < v; ++j) {
      cum += p[ids[j]];
      if (cum >= top_p) {
        cutoff = p[ids[j]];
        break;
      }
    }
    for (auto& x : p) {
      if (x < cutoff) x = 0;
    }
  }
  if (top_k > 0 && top_k < v) {
    for (int j = top_k; j < v; ++j) p[ids[j]] = 0;
  }
  double t = 0;
  for (auto& x : p) t += x = std::pow(x, 1.0 / temperature);
  for (auto& x : p) x /= t;
  return p;
}

// Upper quantile of chi-square with `df` degrees of freedom at a false-failure probability
// of about 1e-9 (Wilson-Hilferty, z = 6.0; conservative for df >= 3).
double ChiSquareBound(int df) {
  const double z = 6.0, a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

std::vector<int> Draw(const SamplingParams& params, const std::vector<float>& logits, int n) {
  Sampler s(params, nullptr);
  std::vector<int> counts(logits.size());
  std::vector<float> work;
  for (int i = 0; i < n; ++i) {
    work = logits;
    ++counts[s.Sample(work.data(), static_cast<int>(work.size())).token];
  }
  return counts;
}

// Returns the chi-square statistic; sets *df. Bins with zero expectation must be empty.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& p, int n, int* df) {
  double chi = 0;
  *df = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0 but was drawn";
      continue;
    }
    const double e = p[i] * n;
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++*df;
  }
  return chi;
}

TEST(Sampler, SameSeedSameTokensDifferentSeedsDiffer) {
  const auto logits = RandomLogits(65536, 1, 4.0f);
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.seed = seed;
    p.top_p = 0.9f;
    p.temperature = 1.2f;
    p.presence_penalty = 0.2f;
    p.frequency_penalty = 0.2f;
    Sampler s(p, nullptr);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto w = logits;
      out.push_back(s.Sample(w.data(), 65536).token);
      s.Accept(out.back());
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
  EXPECT_NE(run(0), run(1));
}

TEST(Sampler, TopKNeverEmitsExcludedTokens) {
  const auto logits = RandomLogits(1000, 2);
  SamplingParams p;
  p.top_k = 7;
  p.temperature = 3.0f;  // flatten, so excluded tokens would show up if they could
  p.seed = 5;
  std::vector<int> ids(1000);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const std::set<int> allowed(ids.begin(), ids.begin() + 7);
  const auto counts = Draw(p, logits, 20000);
  for (int i = 0; i < 1000; ++i) {
    if (!allowed.count(i)) {
      EXPECT_EQ(counts[i], 0) << i;
    }
  }
  for (int i : allowed) EXPECT_GT(counts[i], 0) << i;
}

TEST(Sampler, TopPNeverEmitsExcludedTokens) {
  const auto logits = RandomLogits(5000, 3, 5.0f);
  SamplingParams p;
  p.top_p = 0.3f;
  p.temperature = 2.0f;
  p.seed = 6;
  const auto target = PackageDistribution(logits, 1.0f, 0.3f, 0);
  const auto counts = Draw(p, logits, 5000);
  int allowed = 0;
  for (int i = 0; i < 5000; ++i) {
    if (target[i] == 0) {
      EXPECT_EQ(counts[i], 0) << i;
    }
    allowed += target[i] > 0;
  }
  EXPECT_GT(allowed, 10);
  EXPECT_LT(allowed, 5000);
}

TEST(Sampler, TopPKeepsTiesAtTheCutoff) {
  // probs ~ [0.4, 0.3, 0.3]: top_p 0.5 -> cutoff 0.3, both tied tokens stay.
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.3f)};
  SamplingParams p;
  p.top_p = 0.5f;
  auto counts = Draw(p, logits, 3000);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[2], 0);
  p.top_p = 0.3f;  // reached by the first token alone
  counts = Draw(p, logits, 3000);
  EXPECT_EQ(counts[0], 3000);
  // top_p 0: the cutoff is the largest probability; tokens tied with it stay.
  const std::vector<float> tied = {0.5f, 2.0f, 1.0f, 2.0f};
  for (int k : {0, 3}) {
    p.top_p = 0.0f;
    p.top_k = k;
    counts = Draw(p, tied, 2000);
    EXPECT_EQ(counts[1] + counts[3], 2000) << k;
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[3], 0);
  }
}

TEST(Sampler, TopKTiesPreferLowerIds) {
  const std::vector<float> logits = {0, 1, 1, 1, 0};
  SamplingParams p;
  p.top_k = 2;
  const auto counts = Draw(p, logits, 2000);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[2], 0);
  EXPECT_EQ(counts[0] + counts[3] + counts[4], 0);
}

struct FitCase {
  float temperature, top_p;
  int top_k;
};

TEST(Sampler, FrequenciesMatchThePackageDistribution) {
  const auto logits = RandomLogits(40, 4, 1.5f);
  const FitCase cases[] = {{1.0f, 1.0f, 0}, {0.7f, 1.0f, 0}, {1.5f, 1.0f, 0},  {1.0f, 0.8f, 0},
                           {0.6f, 0.7f, 0}, {1.3f, 1.0f, 12}, {0.9f, 0.9f, 20}, {2.0f, 0.5f, 30}};
  const int n = 100000;
  uint64_t seed = 100;
  for (const auto& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_p = c.top_p;
    p.top_k = c.top_k;
    p.seed = seed++;
    const auto target = PackageDistribution(logits, c.temperature, c.top_p, c.top_k);
    int df = 0;
    const double chi = ChiSquare(Draw(p, logits, n), target, n, &df);
    EXPECT_LT(chi, ChiSquareBound(df)) << "T=" << c.temperature << " top_p=" << c.top_p
                                       << " top_k=" << c.top_k << " df=" << df;
  }
}

TEST(Sampler, ChiSquareDetectsTheWrongTemperature) {
  // The goodness-of-fit test has power: draws at T=0.8 do not fit the T=1 distribution.
  const auto logits = RandomLogits(40, 4, 1.5f);
  SamplingParams p;
  p.temperature = 0.8f;
  p.seed = 9;
  const int n = 100000;
  int df = 0;
  const double chi = ChiSquare(Draw(p, logits, n), PackageDistribution(logits, 1.0f, 1.0f, 0), n, &df);
  EXPECT_GT(chi, 10 * ChiSquareBound(df));
}

// Direct transcription of the package's generate(): occurrence dict, decay, www.
struct PackagePenalty {
  std::map<int, double> occ;
  std::vector<int> order;
  void Accept(int token, const std::string& text, double decay) {
    for (auto& [k, v] : occ) v *= decay;
    const double www = std::string(" \t0123456789").find(text) != std::string::npos ? 0 : 1;
    if (!occ.count(token)) order.push_back(token);
    occ[token] += www;
  }
};

TEST(Sampler, PenaltiesFollowThePackageFormula) {
  auto tok = MakeByteTokenizer();
  SamplingParams p;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.25f;
  p.penalty_decay = 0.9f;
  p.banned_tokens = {7};
  p.temperature = 0;  // greedy: no randomness needed here
  Sampler s(p, tok.get());
  PackagePenalty ref;
  // 'a' 'a' ' ' '5' 'b' 'a' ' ' '\xff' (byte ids = byte + 1)
  for (int b : {int{'a'}, int{'a'}, int{' '}, int{'5'}, int{'b'}, int{'a'}, int{' '}, 0xFF}) {
    s.Accept(b + 1);
    ref.Accept(b + 1, b == 0xFF ? "\xEF\xBF\xBD" : std::string(1, static_cast<char>(b)), 0.9);
  }
  ASSERT_EQ(s.occurrence().size(), ref.order.size());
  for (const auto& [t, c] : s.occurrence()) EXPECT_NEAR(c, ref.occ.at(t), 1e-6) << t;
  EXPECT_EQ(ref.occ.at(' ' + 1), 0.0);  // whitespace and digits count 0 ...
  std::vector<float> logits(257, 1.0f);
  s.Sample(logits.data(), 257);
  EXPECT_EQ(logits[7], -kInf);
  for (int t = 0; t < 257; ++t) {
    if (t == 7) continue;
    float expect = 1.0f;
    if (ref.occ.count(t)) expect -= static_cast<float>(0.4f + ref.occ.at(t) * 0.25f);
    EXPECT_NEAR(logits[t], expect, 1e-6) << t;  // ... but still get the presence penalty
  }
}

TEST(Sampler, PenalisedDrawsFitThePenalisedDistribution) {
  const auto logits = RandomLogits(30, 8, 1.0f);
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.3f;
  p.seed = 77;
  Sampler s(p, nullptr);
  for (int t : {3, 3, 5, 9, 3}) s.Accept(t);
  auto pen = logits;
  const auto occ = s.occurrence();
  for (const auto& [t, c] : occ) pen[t] -= static_cast<float>(0.5f + c * 0.3f);
  const auto target = PackageDistribution(pen, 1.0f, 1.0f, 0);
  const int n = 100000;
  std::vector<int> counts(30);
  for (int i = 0; i < n; ++i) {
    auto w = logits;
    ++counts[s.Sample(w.data(), 30).token];  // no Accept: the penalties stay fixed
  }
  int df = 0;
  const double chi = ChiSquare(counts, target, n, &df);
  EXPECT_LT(chi, ChiSquareBound(df)) << df;
  EXPECT_LT(counts[3], target[3] * n * 1.2);
}

TEST(Sampler, AcceptCountsWhitespaceAndDigitsAsZero) {
  auto tok = MakeByteTokenizer();
  SamplingParams p;
  p.penalty_decay = 1.0f;
  p.frequency_penalty = 0.1f;  // with zero penalties nothing is counted
  Sampler s(p, tok.get());
  for (int b : {int{' '}, int{'\t'}, int{'0'}, int{'9'}, int{'x'}, int{'\n'}, 0xC3}) s.Accept(b + 1);
  s.Accept(0);  // "" is a substring of everything
  std::map<int, double> got(s.occurrence().begin(), s.occurrence().end());
  EXPECT_EQ(got[' ' + 1], 0);
  EXPECT_EQ(got['\t' + 1], 0);
  EXPECT_EQ(got['0' + 1], 0);
  EXPECT_EQ(got['9' + 1], 0);
  EXPECT_EQ(got['x' + 1], 1);
  EXPECT_EQ(got['\n' + 1], 1);
  EXPECT_EQ(got[0xC3 + 1], 1);
  EXPECT_EQ(got[0], 0);
}

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    auto logits = RandomLogits(65536, seed);
    const int argmax = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    SamplingParams p;
    p.temperature = 0;
    p.seed = seed;
    Sampler s(p, nullptr);
    EXPECT_EQ(s.Sample(logits.data(), 65536).token, argmax);
  }
  std::vector<float> tie = {0, 3, 1, 3, 3};
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler s(greedy, nullptr);
  EXPECT_EQ(s.Sample(tie.data(), 5).token, 1);
}

double Entropy(const std::vector<int>& counts, int n) {
  double h = 0;
  for (int c : counts) {
    if (c) h -= (double(c) / n) * std::log(double(c) / n);
  }
  return h;
}

TEST(Sampler, HigherTemperatureMeansHigherEntropy) {
  const auto logits = RandomLogits(200, 12, 3.0f);
  double prev = -1;
  for (float t : {0.3f, 0.6f, 1.0f, 1.6f, 3.0f}) {
    SamplingParams p;
    p.temperature = t;
    p.seed = 1234;
    const double h = Entropy(Draw(p, logits, 20000), 20000);
    EXPECT_GT(h, prev) << "T=" << t;
    prev = h;
  }
}

TEST(Sampler, LogprobsAreLogSoftmaxOfPenalisedLogits) {
  auto logits = RandomLogits(1000, 13);
  const auto orig = logits;
  SamplingParams p;
  p.top_logprobs = 5;
  p.top_k = 3;
  p.temperature = 0.5f;
  p.banned_tokens = {0};
  Sampler s(p, nullptr);
  const auto r = s.Sample(logits.data(), 1000);
  double mx = -1e300, z = 0;
  for (int i = 1; i < 1000; ++i) mx = std::max(mx, double(orig[i]));
  for (int i = 1; i < 1000; ++i) z += std::exp(orig[i] - mx);
  const double log_z = mx + std::log(z);
  EXPECT_NEAR(r.logprob, orig[r.token] - log_z, 1e-4);
  ASSERT_EQ(r.top.size(), 5u);
  std::vector<int> ids(999);
  std::iota(ids.begin(), ids.end(), 1);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return orig[a] > orig[b]; });
  for (int j = 0; j < 5; ++j) {
    EXPECT_EQ(r.top[j].token, ids[j]);
    EXPECT_NEAR(r.top[j].logprob, orig[ids[j]] - log_z, 1e-4);
  }
  EXPECT_TRUE(r.token == ids[0] || r.token == ids[1] || r.token == ids[2]);
}

TEST(Sampler, NonFiniteLogits) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  {
    std::vector<float> l = {nan, 0.0f, nan, -1.0f};
    SamplingParams p;
    p.top_logprobs = 4;
    auto counts = Draw(p, l, 2000);
    EXPECT_EQ(counts[0] + counts[2], 0);
    Sampler s(p, nullptr);
    auto r = s.Sample(l.data(), 4);
    EXPECT_EQ(r.top.size(), 2u);  // NaN tokens are not reported
    EXPECT_TRUE(std::isfinite(r.logprob));
  }
  {
    std::vector<float> l = {0.0f, kInf, 5.0f, kInf};
    auto counts = Draw(SamplingParams{}, l, 2000);
    EXPECT_EQ(counts[0] + counts[2], 0);
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[3], 0);
  }
  {
    std::vector<float> l = {1.0f, 2.0f, 3.0f};
    SamplingParams p;
    p.banned_tokens = {0, 1, 2, 99, -5};  // out-of-range bans are ignored
    Sampler s(p, nullptr);
    auto r = s.Sample(l.data(), 3);
    EXPECT_EQ(r.token, 0);
    EXPECT_EQ(r.logprob, -kInf);
  }
  {
    std::vector<float> l = {-kInf, -kInf, 1.0f};
    SamplingParams p;
    p.top_p = 0.5f;
    p.top_k = 2;
    EXPECT_EQ(Draw(p, l, 100)[2], 100);
  }
}

TEST(Sampler, ExtremeTemperaturesStayFinite) {
  const auto logits = RandomLogits(100, 14, 50.0f);
  for (float t : {1e-6f, 1e-3f, 1e3f, 1e6f}) {
    SamplingParams p;
    p.temperature = t;
    const auto counts = Draw(p, logits, 200);
    EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), 200);
  }
}

}  // namespace
}  // namespace rwkvx
