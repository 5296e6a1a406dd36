// Token sampling on the GPU with the host Sampler's semantics (engine/sampler.h,
// docs/SAMPLING.md): logit adjustments (bans, penalties), non-finite logits, softmax,
// top-k, top-p, probs ** (1 / temperature), one draw from a uniform the host supplies.
// One block per sampled row; only (token, logprob) goes back to the host.
//
// Sums are fixed-point integers (2^-40 units of a probability relative to the top token),
// so the result does not depend on the order of additions: the same logits and uniform
// give the same token on every run. The host computes the same quantities in floating
// point; the two can differ only where the draw or a top-p cutoff falls within ~1e-7 of
// a boundary (docs/SAMPLING.md, "Sampling on the GPU").
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct SampleItem {
  int row = 0;              // row of `logits`
  float temperature = 1.f;  // <= 0 or NaN: greedy (lowest id among the maxima)
  float top_p = 1.f;        // >= 1 or NaN: off
  int top_k = 0;            // <= 0 or >= V: off
  double uniform = 0.0;     // the draw, in [0, 1)
  int adj0 = 0, nadj = 0;   // this row's adjustments: adj_tok/adj_val[adj0, adj0 + nadj)
};

struct SampleParams {
  float* logits = nullptr;          // [*, V] float32; adjusted in place
  const SampleItem* items = nullptr;  // [n]
  // Per adjustment: the token and what to subtract from its logit; +inf bans it (the
  // logit becomes -inf). A token appears at most once per row.
  const int* adj_tok = nullptr;
  const float* adj_val = nullptr;
  int n = 0, V = 0;
  int* out_token = nullptr;      // [n]
  float* out_logprob = nullptr;  // [n] log softmax of the adjusted logits at the token
};
cudaError_t LaunchSample(const SampleParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
