// Multi-head softmax attention primitives over a KV cache laid out row-major [rows, C]
// (head h = columns h*N..h*N+N-1), scale 1/sqrt(N), no positional encoding.
// Stateless; safe from any thread (Attend and CompressionVotes use ParallelFor inside).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace rwkvx::cpu {

// A run of `rows` cache rows (row stride C) of keys and of values.
struct KvSpan {
  const float* k;
  const float* v;
  int64_t rows;
};

// Out[i] (nq rows, stride C) = per head, softmax over the first first_visible + i keys of the
// concatenated spans of (Q[i] . K[j] / sqrt(N)), times V[j]. Decode is nq = 1 with every key
// visible; causal prefill is the cache plus the new rows with first_visible = cache + 1.
// Each output row is computed on its own, in a fixed order (per key an 8-lane dot product,
// softmax with a float64 sum, float accumulation of p * v in key order), so a query's
// result does not depend on nq, on its place in Q, or on how the keys are cut into spans:
// decode, one prefill call and several give bit-identical rows (docs/ARCHITECTURE.md).
void Attend(const float* Q, int64_t nq, const std::vector<KvSpan>& spans, int64_t first_visible,
            float* Out, int64_t C, int64_t H, int64_t N);

// Per head h, vote[h * npast + r] = sum over the nq queries of softmax_r(q . K[r]) over the
// first npast cache rows (the KV-compression vote).
void CompressionVotes(const float* Q, int64_t nq, const float* K, int64_t npast, float* vote,
                      int64_t C, int64_t H, int64_t N);

}  // namespace rwkvx::cpu
