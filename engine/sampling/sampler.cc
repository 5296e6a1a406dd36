// Sampler: the official package's PIPELINE.sample_logits + generate() penalty logic, with a
// seeded generator. See docs/SAMPLING.md for the exact semantics and the few deviations.
// Cost per call for V = 65536: a few linear passes (no sort unless top-k is large).
#include "engine/sampling/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "engine/tokenizer/tokenizer.h"

namespace rwkvx {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kMaxTopLogprobs = 20;

// Uniform double in [0, 1) from 53 random bits: identical on every platform (unlike
// std::uniform_real_distribution, whose algorithm is implementation-defined).
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// True if `text` is a substring of " \t0123456789" (the package's `ttt in ' \t0123456789'`;
// the empty string is a substring of every string).
bool IsFreeText(std::string_view text) {
  static constexpr std::string_view kFree = " \t0123456789";
  return kFree.find(text) != std::string_view::npos;
}

#define RWKVX_ALWAYS_INLINE __attribute__((always_inline))

// exp(x) for x <= 0 (including -inf, which gives exactly 0), relative error ~2e-7 (Cephes
// expf polynomial). Branch-free so that the loops over the vocabulary vectorise; results
// below 2^-126 are flushed to 0.
RWKVX_ALWAYS_INLINE inline float ExpNonPositive(float x) {
  // Integer masks instead of float compares so GCC can if-convert and vectorise. For x <= 0
  // the bit pattern grows with |x|: x < -87 (or -inf) <=> bits > bits(-87).
  constexpr uint32_t kMinBits = 0xC2AE0000u;  // -87.0f
  const uint32_t xb = std::bit_cast<uint32_t>(x);
  const uint32_t tiny = 0u - static_cast<uint32_t>(xb > kMinBits);  // all ones if tiny
  x = std::bit_cast<float>((xb & ~tiny) | (kMinBits & tiny));
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(p * scale) & ~tiny);
}

// out[i] = exp((in[i] - shift) * mul); returns the sum (float blocks summed in double).
double ExpShifted(const float* __restrict in, int n, float shift, float mul,
                                 float* __restrict out) {
  // A trip count that is a multiple of 16 lets GCC vectorise at -O2 (no epilogue needed).
  const int n16 = n & ~15;
  for (int i = 0; i < n16; ++i) out[i] = ExpNonPositive((in[i] - shift) * mul);
  for (int i = n16; i < n; ++i) out[i] = ExpNonPositive((in[i] - shift) * mul);
  constexpr int kBlock = 16;
  double total = 0.0;
  int i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    float acc = 0.0f;
    for (int j = 0; j < kBlock; ++j) acc += out[i + j];
    total += acc;
  }
  for (; i < n; ++i) total += out[i];
  return total;
}

// Maximum of l[0..n) and whether any element is NaN, by integer operations on the bit
// patterns (float max with compares does not vectorise without -ffast-math). The key
// bits ^ ((bits >> 31) & 0x7FFFFFFF), as a signed int, orders floats like their values.
float MaxAndNan(const float* __restrict l, int n, bool* any_nan) {
  int32_t max_key = std::numeric_limits<int32_t>::min();
  uint32_t nan = 0;
  // 8 independent lanes so the loop body vectorises (SLP) even where the reduction does not.
  constexpr int kLanes = 8;
  int32_t lane_max[kLanes];
  uint32_t lane_nan[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lane_max[j] = max_key;
    lane_nan[j] = 0;
  }
  const int n8 = n & ~(kLanes - 1);
  for (int i = 0; i < n8; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const uint32_t b = std::bit_cast<uint32_t>(l[i + j]);
      lane_nan[j] |= static_cast<uint32_t>((b & 0x7FFFFFFFu) > 0x7F800000u);
      const int32_t key = static_cast<int32_t>(b ^ ((0u - (b >> 31)) & 0x7FFFFFFFu));
      lane_max[j] = key > lane_max[j] ? key : lane_max[j];
    }
  }
  for (int j = 0; j < kLanes; ++j) {
    nan |= lane_nan[j];
    max_key = std::max(max_key, lane_max[j]);
  }
  for (int i = n8; i < n; ++i) {
    const uint32_t b = std::bit_cast<uint32_t>(l[i]);
    nan |= static_cast<uint32_t>((b & 0x7FFFFFFFu) > 0x7F800000u);
    const int32_t key = static_cast<int32_t>(b ^ ((0u - (b >> 31)) & 0x7FFFFFFFu));
    max_key = std::max(max_key, key);
  }
  *any_nan = nan != 0;
  const uint32_t kb = static_cast<uint32_t>(max_key);
  return std::bit_cast<float>(kb ^ ((0u - (kb >> 31)) & 0x7FFFFFFFu));
}

// Index drawn with probability w[i] / total among idx (or 0..n-1 when idx is null), walking
// in the given order; -1 if every weight is 0.
int32_t Walk(const float* w, const int32_t* idx, int n, double total, double u) {
  const double x = u * total;
  double acc = 0.0;
  int32_t last_positive = -1;
  for (int j = 0; j < n; ++j) {
    const int32_t i = idx ? idx[j] : j;
    if (w[i] <= 0.0f) continue;
    acc += w[i];
    last_positive = i;
    if (acc > x) return i;
  }
  return last_positive;  // rounding left x at the very top
}

// The package's top-p cutoff without sorting: the value v_j at the first position j (in
// descending order) where the cumulative sum reaches `target`. Quickselect with a 3-way
// partition: if the values above the pivot already reach the target the cutoff is among
// them; if they plus the pivot's equals do, it is the pivot (ties at the cutoff stay);
// otherwise it is below. Returns false if even the total stays below `target`.
bool TopPCutoff(float* v, size_t n, double target, float* cutoff) {
  float* lo = v;
  float* hi = v + n;
  while (hi > lo) {
    const size_t m = static_cast<size_t>(hi - lo);
    float a = lo[0], b = lo[m / 2], c = hi[-1];  // median of three as the pivot
    const float pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    float* gt_end = std::partition(lo, hi, [pivot](float x) { return x > pivot; });
    float* eq_end = std::partition(gt_end, hi, [pivot](float x) { return x == pivot; });
    double sum_gt = 0.0;
    for (float* p = lo; p < gt_end; ++p) sum_gt += *p;
    if (gt_end > lo && sum_gt >= target) {
      hi = gt_end;  // the cutoff is one of the larger values
      continue;
    }
    const double sum_eq = static_cast<double>(pivot) * static_cast<double>(eq_end - gt_end);
    if (sum_gt + sum_eq >= target) {
      *cutoff = pivot;
      return true;
    }
    target -= sum_gt + sum_eq;
    lo = eq_end;
  }
  return false;
}

int32_t ArgMax(const float* logits, int vocab) {
  int best = 0;  // lowest id among equal maxima
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

}  // namespace

Sampler::Sampler(const SamplingParams& p, const Tokenizer* tok) : p_(p), tok_(tok), rng_(p.seed) {}

void ApplyDeviceAdjustments(const std::vector<std::pair<int32_t, float>>& adjust, float* logits, int vocab,
                            const std::vector<uint32_t>* allowed) {
  for (const auto& [t, v] : adjust) {
    if (t < 0 || t >= vocab) continue;
    logits[t] = v == std::numeric_limits<float>::infinity() ? kNegInf : logits[t] - v;
  }
  if (allowed != nullptr && !allowed->empty()) ApplyAllowedMask(allowed->data(), allowed->size(), logits, vocab);
}

void ApplyAllowedMask(const uint32_t* words, size_t nwords, float* logits, int vocab) {
  const int covered = static_cast<int>(std::min(static_cast<size_t>(vocab), nwords * 32));
  const int full = covered / 32;
  for (int w = 0; w < full; ++w) {
    const uint32_t bits = words[w];
    if (bits == ~0u) continue;
    float* l = logits + static_cast<size_t>(w) * 32;
    for (int j = 0; j < 32; ++j) l[j] = (bits >> j) & 1u ? l[j] : kNegInf;  // branch-free: vectorises
  }
  for (int id = full * 32; id < covered; ++id)
    if (!((words[id / 32] >> (id % 32)) & 1u)) logits[id] = kNegInf;
  for (int id = covered; id < vocab; ++id) logits[id] = kNegInf;  // ids the mask does not reach
}

float Sampler::Penalty(double count) const {
  return static_cast<float>(static_cast<double>(p_.presence_penalty) +
                            count * static_cast<double>(p_.frequency_penalty));
}

void Sampler::ApplyAdjustments(float* logits, int vocab) const {
  // Bans, then biases and penalties (the package's order; -inf stays -inf). A token's
  // bias and penalty are one subtraction (penalty - bias), exactly as DeviceSpec lists it,
  // so the host and a device sampler see the same logits.
  for (int32_t t : p_.banned_tokens) {
    if (t >= 0 && t < vocab) logits[t] = kNegInf;
  }
  for (const auto& [t, bias] : p_.logit_bias) {
    if (t < 0 || t >= vocab || InOccurrence(t)) continue;
    logits[t] -= -bias;
  }
  for (const auto& [t, count] : occurrence_) {
    if (t < 0 || t >= vocab) continue;
    logits[t] -= Penalty(count) - Bias(t);
  }
}

float Sampler::Bias(int32_t token) const {
  if (p_.logit_bias.empty()) return 0.0f;
  auto it = std::lower_bound(p_.logit_bias.begin(), p_.logit_bias.end(), token,
                             [](const std::pair<int32_t, float>& e, int32_t t) { return e.first < t; });
  return it != p_.logit_bias.end() && it->first == token ? it->second : 0.0f;
}

double Sampler::NextUniform() {
  if (!(p_.temperature > 0.0f)) return 0.0;
  const float inv_t = static_cast<float>(1.0 / static_cast<double>(p_.temperature));
  if (!(inv_t < std::numeric_limits<float>::max())) return 0.0;
  return Uniform01(rng_);
}

void Sampler::DeviceSpec(const std::vector<int32_t>& extra_bans, DeviceSampling* out) {
  out->temperature = p_.temperature;
  out->top_p = p_.top_p;
  out->top_k = p_.top_k;
  out->adjust.clear();
  // Bans win over penalties (-inf - x = -inf); each token once.
  if (!bans_valid_ || extra_bans != bans_extra_) {
    bans_.assign(p_.banned_tokens.begin(), p_.banned_tokens.end());
    bans_.insert(bans_.end(), extra_bans.begin(), extra_bans.end());
    std::sort(bans_.begin(), bans_.end());
    bans_.erase(std::unique(bans_.begin(), bans_.end()), bans_.end());
    bans_extra_ = extra_bans;
    bans_valid_ = true;
  }
  const std::vector<int32_t>& bans = bans_;
  out->adjust.reserve(bans.size() + p_.logit_bias.size() + occurrence_.size());
  for (int32_t t : bans) out->adjust.emplace_back(t, std::numeric_limits<float>::infinity());
  // Penalties (minus biases) only where they change the logit (l - 0 == l): with zero
  // presence and frequency penalties the list holds the bans and biases alone and stays
  // the same size step after step (a longer list grows the backend's step metadata,
  // which drops its CUDA graphs).
  for (const auto& [t, bias] : p_.logit_bias) {
    if (bias == 0.0f || InOccurrence(t) || std::binary_search(bans.begin(), bans.end(), t)) continue;
    out->adjust.emplace_back(t, -bias);
  }
  for (const auto& [t, count] : occurrence_) {
    const float value = Penalty(count) - Bias(t);
    if (value == 0.0f || std::binary_search(bans.begin(), bans.end(), t)) continue;
    out->adjust.emplace_back(t, value);
  }
  out->uniform = NextUniform();
}

SampleResult Sampler::Sample(float* logits, int vocab) {
  if (vocab <= 0) return SampleResult{};
  // 1. Bans, then penalties.
  ApplyAdjustments(logits, vocab);
  return SampleAdjusted(logits, vocab, NextUniform());
}

SampleResult Sampler::SampleAdjusted(float* logits, int vocab, double u) {
  SampleResult r;
  if (vocab <= 0) return r;
  // 2. Non-finite logits: NaN never wins; if any logit is +inf, the +inf tokens share all
  //    the probability equally (they become 0, every other token -inf).
  bool any_nan = false;
  float max_logit = MaxAndNan(logits, vocab, &any_nan);
  if (any_nan) {
    for (int i = 0; i < vocab; ++i) {
      if (std::isnan(logits[i])) logits[i] = kNegInf;
    }
    max_logit = MaxAndNan(logits, vocab, &any_nan);
  }
  if (max_logit == std::numeric_limits<float>::infinity()) {
    for (int i = 0; i < vocab; ++i) {
      logits[i] = (logits[i] == std::numeric_limits<float>::infinity()) ? 0.0f : kNegInf;
    }
    max_logit = 0.0f;
  }
  if (max_logit == kNegInf) {  // everything banned: end of text, log-probability -inf
    r.token = 0;
    r.logprob = kNegInf;
    return r;
  }
  // 3. Softmax (unnormalised, kept for the draw) and the log normaliser.
  exp_.resize(vocab);
  const double sum = ExpShifted(logits, vocab, max_logit, 1.0f, exp_.data());
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  // 4. Choose: temperature 0, negative or NaN is greedy.
  if (p_.temperature > 0.0f) {
    r.token = Draw(logits, vocab, max_logit, sum, u);
  } else {
    r.token = 0;  // greedy: the lowest id holding the maximum
    while (logits[r.token] != max_logit) ++r.token;
  }
  r.logprob = logits[r.token] - log_z;
  TopLogprobs(logits, vocab, log_z, &r);
  return r;
}

int32_t Sampler::Draw(const float* logits, int vocab, float max_logit, double sum, double u) {
  const bool use_top_p = p_.top_p < 1.0f;  // NaN compares false: off
  const bool use_top_k = p_.top_k > 0 && p_.top_k < vocab;
  kept_.clear();
  if (use_top_k) {
    // The k largest probabilities, lower ids first among equals: the k-th largest value by
    // selection on a copy, then one pass in id order.
    const int k = p_.top_k;
    float kth;
    if (k <= 1024) {  // a min-heap of the k largest: most values fail the first compare
      vals_.assign(exp_.begin(), exp_.begin() + k);
      std::make_heap(vals_.begin(), vals_.end(), std::greater<float>());
      for (int i = k; i < vocab; ++i) {
        if (exp_[i] > vals_.front()) {
          std::pop_heap(vals_.begin(), vals_.end(), std::greater<float>());
          vals_.back() = exp_[i];
          std::push_heap(vals_.begin(), vals_.end(), std::greater<float>());
        }
      }
      kth = vals_.front();
    } else {
      vals_.assign(exp_.begin(), exp_.end());
      std::nth_element(vals_.begin(), vals_.begin() + (k - 1), vals_.end(), std::greater<float>());
      kth = vals_[k - 1];
    }
    int above = 0;
    for (int i = 0; i < vocab; ++i) above += exp_[i] > kth;
    int ties_left = k - above;
    for (int i = 0; i < vocab; ++i) {
      if (exp_[i] > kth || (exp_[i] == kth && ties_left-- > 0)) kept_.push_back(i);
    }
    if (use_top_p) {
      // The package's cutoff is the probability where the descending cumulative sum reaches
      // top_p. If the top k do not reach it, the cutoff lies below them and all k stay.
      order_.assign(kept_.begin(), kept_.end());
      std::sort(order_.begin(), order_.end(), [this](int32_t a, int32_t b) {
        return exp_[a] > exp_[b] || (exp_[a] == exp_[b] && a < b);
      });
      const double target = static_cast<double>(p_.top_p) * sum;
      double cum = 0.0;
      float cutoff = 0.0f;
      for (int32_t i : order_) {
        cum += exp_[i];
        if (cum >= target) {
          cutoff = exp_[i];
          break;
        }
      }
      std::erase_if(kept_, [&](int32_t i) { return exp_[i] < cutoff; });
    }
  } else if (use_top_p) {
    // Top-p alone: find the cutoff by selection in expected O(V), no sort.
    vals_.assign(exp_.begin(), exp_.end());
    float cutoff = 0.0f;
    const bool found = TopPCutoff(vals_.data(), vals_.size(), static_cast<double>(p_.top_p) * sum, &cutoff);
    // Not found only through rounding with top_p just below 1: keep everything (the
    // package would keep only the top token there; see docs/SAMPLING.md).
    if (found) {
      for (int i = 0; i < vocab; ++i) {
        if (exp_[i] >= cutoff) kept_.push_back(i);
      }
    }
  }
  const bool keep_all = kept_.empty();  // never empty after filtering: the top token stays
  // probs ** (1 / temperature), renormalised = exp((logit - max) / T). The most likely token
  // always survives top-p/top-k, so max_logit is also the maximum of the kept set.
  const float inv_t = static_cast<float>(1.0 / static_cast<double>(p_.temperature));
  if (!(inv_t < std::numeric_limits<float>::max())) return ArgMax(logits, vocab);  // T ~ 0
  int32_t token = -1;
  if (inv_t == 1.0f) {
    if (keep_all) {
      token = Walk(exp_.data(), nullptr, vocab, sum, u);
    } else {
      double total = 0.0;
      for (int32_t i : kept_) total += exp_[i];
      token = Walk(exp_.data(), kept_.data(), static_cast<int>(kept_.size()), total, u);
    }
  } else if (keep_all) {
    vals_.resize(vocab);
    const double total = ExpShifted(logits, vocab, max_logit, inv_t, vals_.data());
    token = Walk(vals_.data(), nullptr, vocab, total, u);
  } else {
    vals_.resize(vocab);
    double total = 0.0;
    for (int32_t i : kept_) total += vals_[i] = ExpNonPositive((logits[i] - max_logit) * inv_t);
    token = Walk(vals_.data(), kept_.data(), static_cast<int>(kept_.size()), total, u);
  }
  // -1: every weight underflowed (impossible: the top token has weight 1), be safe anyway.
  return token >= 0 ? token : ArgMax(logits, vocab);
}

void Sampler::TopLogprobs(const float* logits, int vocab, float log_z, SampleResult* r) {
  const int n = std::min({std::max(p_.top_logprobs, 0), kMaxTopLogprobs, vocab});
  if (n == 0) return;
  // Keep the n best (logit desc, id asc) in a small sorted buffer: O(V * n) worst case but
  // O(V) in practice since most logits fail the first comparison.
  std::vector<int32_t> best;
  best.reserve(n + 1);
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] == kNegInf) continue;  // banned / NaN tokens are never reported
    if (static_cast<int>(best.size()) == n && !better(i, best.back())) continue;
    auto it = std::upper_bound(best.begin(), best.end(), i, better);
    best.insert(it, i);
    if (static_cast<int>(best.size()) > n) best.pop_back();
  }
  r->top.reserve(best.size());
  for (int32_t t : best) r->top.push_back({t, logits[t] - log_z});
}

void Sampler::Accept(int32_t token) {
  if (p_.presence_penalty == 0.0f && p_.frequency_penalty == 0.0f) return;  // (sampler.h)
  const double decay = static_cast<double>(p_.penalty_decay);
  for (auto& entry : occurrence_) entry.second *= decay;
  const double add = (tok_ != nullptr && IsFreeText(tok_->TokenBytes(token))) ? 0.0 : 1.0;
  auto [it, inserted] = occurrence_index_.try_emplace(token, occurrence_.size());
  if (inserted) {
    occurrence_.push_back({token, add});
  } else {
    occurrence_[it->second].second += add;
  }
}

}  // namespace rwkvx
