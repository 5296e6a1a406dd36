// Multi-head softmax attention primitives over a KV cache laid out row-major [rows, C]
// (head h = columns h*N..h*N+N-1), scale 1/sqrt(N), no positional encoding.
// Stateless; safe from any thread (AttendCausal/DecodeAttend use ParallelFor inside).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace rwkvx::cpu {

// Out[i] (nq rows, stride C) = softmax over keys j <= offset + i of (Q[i] . K[j]) V[j],
// per head. offset < 0 means no mask (every query sees all nk keys).
void AttendCausal(const float* Q, int64_t nq, const float* K, const float* V, int64_t nk,
                  int64_t offset, float* Out, int64_t C, int64_t H, int64_t N);

// One query over cache rows in `segments` ([begin, end) row ranges of K/V) plus one extra
// key/value (the current token). Out [C].
void DecodeAttend(const float* q, const float* K, const float* V,
                  const std::vector<std::pair<int64_t, int64_t>>& segments, const float* k_cur,
                  const float* v_cur, float* out, int64_t C, int64_t H, int64_t N);

// Per head h, vote[h * npast + r] = sum over the nq queries of softmax_r(q . K[r]) over the
// first npast cache rows (the KV-compression vote).
void CompressionVotes(const float* Q, int64_t nq, const float* K, int64_t npast, float* vote,
                      int64_t C, int64_t H, int64_t N);

}  // namespace rwkvx::cpu
