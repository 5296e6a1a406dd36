// Token sampling on the GPU with the host Sampler's semantics (engine/sampling/sampler.h,
// docs/SAMPLING.md): logit adjustments (bans, penalties), a mask of allowed tokens (structured
// output), non-finite logits, softmax,
// top-k, top-p, probs ** (1 / temperature), one draw from a uniform the host supplies.
// Only (token, logprob) goes back to the host.
//
// Each row is split over several blocks (SampleSplits);
// a short sequence of kernels passes per-(row, split) partials through `scratch`. Greedy
// and top-k 1 rows stop after the max and sum passes; rows that neither top-k nor top-p
// restrict draw right after them; top-k / top-p run radix selections over the probability
// bits (5 bits a pass). Sums are fixed-point integers (2^-40 units of a probability
// relative to the top token), so results do not depend on the order of additions nor on
// the split: the same logits and uniform give the same token and log-probability bits on
// every run and at every batch size. The host computes the same quantities in floating
// point; the two can differ only where the draw or a top-p cutoff falls within ~1e-7 of a
// boundary (docs/SAMPLING.md, "Sampling on the GPU").
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernels, except
// SamplePasses' argument (host memory, read at once).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace rwkvx::kernels {

struct SampleItem {
  int row = 0;              // row of `logits`
  float temperature = 1.f;  // <= 0 or NaN: greedy (lowest id among the maxima)
  float top_p = 1.f;        // >= 1 or NaN: off
  int top_k = 0;            // <= 0 or >= V: off
  double uniform = 0.0;     // the draw, in [0, 1)
  int adj0 = 0, nadj = 0;   // this row's adjustments: adj_tok/adj_val[adj0, adj0 + nadj)
  // This row's mask of allowed tokens, applied after the adjustments: words
  // mask[mask0, mask0 + nmask), bit (id % 32) of word id / 32 set = allowed; ids past
  // nmask * 32 are banned. mask0 < 0: no mask.
  int mask0 = -1, nmask = 0;
};

// The selection passes a launch runs (SampleParams::passes). A row that needs a pass the
// launch leaves out is sampled wrongly: take the value from SamplePasses. kSampleTopKP
// (rows restricted by both; with kSampleTopP) adds top-p's first round; kSampleTopPOnly
// (rows top-p restricts and top-k does not) has the sum pass build their first round.
enum SamplePass : unsigned {
  kSampleTopK = 1u,
  kSampleTopP = 2u,
  kSampleTopKP = 4u,
  kSampleTopPOnly = 8u,
  kSampleAllPasses = 15u
};

struct SampleParams {
  float* logits = nullptr;          // [*, V] float32; adjusted in place
  const SampleItem* items = nullptr;  // [n]
  // Per adjustment: the token and what to subtract from its logit; +inf bans it (the
  // logit becomes -inf). A token appears at most once per row.
  const int* adj_tok = nullptr;
  const float* adj_val = nullptr;
  const unsigned* mask = nullptr;  // the rows' masks (SampleItem::mask0); null when no row has one
  int n = 0, V = 0;
  int* out_token = nullptr;      // [n]
  float* out_logprob = nullptr;  // [n] log softmax of the adjusted logits at the token
  void* scratch = nullptr;       // SampleScratchBytes(n, V, splits) bytes, any contents
  unsigned passes = kSampleAllPasses;  // SamplePasses of the same items (a host copy)
  // Blocks a row is split over: 0 = SampleSplits; > 0 forced (clamped to 1..32 and to
  // V / 2048; tests and bench_engine --sample-splits). The split changes no bit.
  int splits = 0;
};

// The split for n rows of V tokens on the current device: the least estimated time over
// 1..32 blocks a row (chunks of at least 2048 ids), counting the waves of the card's
// resident blocks and a fixed cost a block.
int SampleSplits(int n, int V);
// Scratch bytes for n rows of V tokens split `splits` ways (0: SampleSplits).
size_t SampleScratchBytes(int n, int V, int splits = 0);
// The passes rows of `items` (host memory, [n]) need: kSampleTopK where a row's top-k
// restricts (1 < top_k < V at a positive temperature), kSampleTopP likewise for top-p,
// kSampleTopKP where both restrict one row, kSampleTopPOnly where top-p alone does.
unsigned SamplePasses(const SampleItem* items, int n, int V);
cudaError_t LaunchSample(const SampleParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
