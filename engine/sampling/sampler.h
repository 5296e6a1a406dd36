// Token sampling with the official package's semantics (rwkv_x/utils.py PIPELINE):
// penalties on logits (presence + count * frequency, counts decaying each step), then
// softmax, top-p cutoff, top-k, probs ** (1 / temperature), renormalise, draw.
// Plus: seed (same seed => same tokens), greedy at temperature 0, log-probabilities.
// A Sampler is per request and used by one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/backend.h"

namespace rwkvx {

class Tokenizer;

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 1.0f;        // 1 = off
  int top_k = 0;             // 0 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float penalty_decay = 0.996f;  // per generated token, as the package's alpha_decay
  std::vector<int32_t> banned_tokens;
  // OpenAI logit_bias: (token, bias) added to the logit before sampling, sorted by token,
  // each token once (the service validates). A ban wins over a bias.
  std::vector<std::pair<int32_t, float>> logit_bias;
  uint64_t seed = 0;
  int top_logprobs = 0;  // how many alternatives to report (0..20)
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;  // log softmax of the penalised logits (before top-p/k/temperature)
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // top_logprobs entries, most likely first
};

// Applies DeviceSampling::adjust to a logits row as a backend does (+inf bans: the logit
// becomes -inf; any other value is subtracted); ids outside [0, vocab) are skipped. Then,
// where `allowed` is given and not empty, DeviceSampling::allowed's mask (ids it does not
// allow become -inf). The host reference of the GPU sampler's first step (kernels/sample.cu).
void ApplyDeviceAdjustments(const std::vector<std::pair<int32_t, float>>& adjust, float* logits, int vocab,
                            const std::vector<uint32_t>* allowed = nullptr);
// Bans (-inf) the ids of logits [vocab] that words [nwords] do not allow: bit id % 32 of
// word id / 32 set = allowed; ids past nwords * 32 are banned. Structured output's mask, on
// the host sampler's path and in ApplyDeviceAdjustments.
void ApplyAllowedMask(const uint32_t* words, size_t nwords, float* logits, int vocab);

class Sampler {
 public:
  Sampler(const SamplingParams& p, const Tokenizer* tok);
  // Applies bans and penalties to `logits` (V floats, modified in place), then samples.
  SampleResult Sample(float* logits, int vocab);
  // The parts of Sample, for sampling elsewhere (a backend's device sampler, or a test):
  //   ApplyAdjustments: the bans and penalties Sample would apply, into `logits`.
  //   NextUniform: the draw Sample would take from the generator (advances it only where
  //     Sample would: temperature > 0 and finite 1 / temperature), else 0.
  //   SampleAdjusted: Sample's choice on already adjusted logits with a given draw.
  //   DeviceSpec: everything a backend needs (adjustments, extra bans such as
  //     unspellable ids, the draw); advances the generator like Sample. Penalties that
  //     are 0 (zero presence and frequency penalties) are left out: the list does not
  //     grow with the generated tokens then.
  void ApplyAdjustments(float* logits, int vocab) const;
  double NextUniform();
  SampleResult SampleAdjusted(float* logits, int vocab, double uniform);
  void DeviceSpec(const std::vector<int32_t>& extra_bans, DeviceSampling* out);
  // Device sampling reports the chosen token's log-probability but no alternatives.
  bool NeedsLogitRows() const { return p_.top_logprobs > 0; }
  // Records a generated token for the penalties (the package's occurrence update: tokens
  // whose text is a substring of " \t0123456789" add 0, others 1; all counts decay first).
  // With zero presence and frequency penalties nothing is recorded: every penalty is 0
  // whatever the counts (presence + count * 0), so the logits and the device list are
  // the same without them, and a token costs no map update.
  void Accept(int32_t token);

  // The penalty state: (token, decayed count) in first-seen order. A token is penalised
  // (presence + count * frequency) as soon as it is here, even with count 0.
  const std::vector<std::pair<int32_t, double>>& occurrence() const { return occurrence_; }

 private:
  float Penalty(double count) const;  // presence + count * frequency
  float Bias(int32_t token) const;     // logit_bias of the token, 0 if none
  bool InOccurrence(int32_t token) const { return occurrence_index_.count(token) != 0; }
  int32_t Draw(const float* logits, int vocab, float max_logit, double sum_exp, double u);
  void TopLogprobs(const float* logits, int vocab, float log_z, SampleResult* r);

  SamplingParams p_;
  const Tokenizer* tok_;  // not owned; may be null (then every token counts 1 in Accept)
  std::mt19937_64 rng_;
  std::vector<std::pair<int32_t, double>> occurrence_;
  std::unordered_map<int32_t, size_t> occurrence_index_;  // token -> index in occurrence_
  // DeviceSpec's sorted, unique bans (banned_tokens + the extra bans), kept while the
  // extra bans are the same as last time (the usual case: every step of a request).
  std::vector<int32_t> bans_, bans_extra_;
  bool bans_valid_ = false;
  // Scratch reused across steps (no allocation per token after the first).
  std::vector<float> exp_;      // [vocab] exp(logit - max)
  std::vector<int32_t> order_;  // [vocab] token ids, partially sorted (top-k)
  std::vector<float> vals_;     // [vocab] scratch for the top-p selection
  std::vector<int32_t> kept_;   // candidates after top-p / top-k, in id order
};

}  // namespace rwkvx
