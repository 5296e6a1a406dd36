#include "engine/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/cpu/ops.h"

// V8 below is a 32-byte vector type in functions that are always inlined: no ABI crosses.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace rwkvx::cpu {
namespace {

constexpr int64_t kQueryBlock = 128;  // CompressionVotes
constexpr int64_t kAttendBlock = 16;  // queries per Attend job

// Softmax of a row in place over its first n entries.
void SoftmaxRow(float* s, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// Eight floats as one GCC vector (AVX on the AVX2 path, two SSE registers on the baseline).
typedef float V8 __attribute__((vector_size(32)));
__attribute__((always_inline)) inline V8 Load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void Store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }

// The dot product of two N-vectors in one fixed order: 8 lanes (lane l sums the elements
// l, l + 8, ... in order), then a fixed tree. Dot4 is four of them sharing `b`, lane for
// lane the same operations, so its results are Dot's bits.
__attribute__((always_inline)) inline float Reduce8(V8 a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}
__attribute__((always_inline)) inline float Dot(const float* a, const float* b, int64_t N) {
  V8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= N; d += 8) acc += Load8(a + d) * Load8(b + d);
  for (int l = 0; l < 8 && d < N; ++d, ++l) acc[l] += a[d] * b[d];
  return Reduce8(acc);
}
__attribute__((always_inline)) inline void Dot4(const float* const a[4], const float* b, int64_t N, float out[4]) {
  V8 acc0 = {0, 0, 0, 0, 0, 0, 0, 0}, acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int64_t d = 0;
  for (; d + 8 <= N; d += 8) {
    const V8 bb = Load8(b + d);
    acc0 += Load8(a[0] + d) * bb;
    acc1 += Load8(a[1] + d) * bb;
    acc2 += Load8(a[2] + d) * bb;
    acc3 += Load8(a[3] + d) * bb;
  }
  for (int l = 0; l < 8 && d < N; ++d, ++l) {
    acc0[l] += a[0][d] * b[d];
    acc1[l] += a[1][d] * b[d];
    acc2[l] += a[2][d] * b[d];
    acc3[l] += a[3][d] * b[d];
  }
  out[0] = Reduce8(acc0);
  out[1] = Reduce8(acc1);
  out[2] = Reduce8(acc2);
  out[3] = Reduce8(acc3);
}

// acc[j] += p[n] * v[n][j] for n in [0, count), in n order. kN > 0: N is kN (the
// accumulator stays in registers); kN == 0: any N.
template <int kN>
__attribute__((always_inline)) inline void AccumulateRows(const float* p, const float* const* v, int64_t count,
                                                          float* acc, int64_t N) {
  if constexpr (kN > 0) {
    static_assert(kN % 8 == 0);
    V8 a[kN / 8];
    for (int j = 0; j < kN / 8; ++j) a[j] = Load8(acc + 8 * j);
    for (int64_t n = 0; n < count; ++n) {
      const V8 pn = V8{} + p[n];
      const float* vn = v[n];
      for (int j = 0; j < kN / 8; ++j) a[j] += pn * Load8(vn + 8 * j);
    }
    for (int j = 0; j < kN / 8; ++j) Store8(acc + 8 * j, a[j]);
  } else {
    for (int64_t n = 0; n < count; ++n) {
      const float pn = p[n];
      const float* vn = v[n];
      for (int64_t j = 0; j < N; ++j) acc[j] += pn * vn[j];
    }
  }
}

constexpr int64_t kKeyTile = 64;  // keys per pass (their head slices stay in L1)

// One job of Attend: head h, queries [b0, b1). Keys go in tiles of kKeyTile, each tile
// serving every query of the block, but every (query, key) product and every query's
// accumulation over keys happen in the one order the decode path (nq = 1) uses.
template <int kN>
__attribute__((always_inline)) inline void AttendBlockBody(const float* Q, int64_t b0, int64_t b1,
                                                           const std::vector<KvSpan>& spans, int64_t nk,
                                                           int64_t first_visible, float* Out, int64_t C,
                                                           int64_t h, int64_t N) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(N));
  const int64_t nb = b1 - b0;
  const int64_t width = std::min(nk, first_visible + b1 - 1);  // keys the last query sees
  for (int64_t i = b0; i < b1; ++i)
    if (first_visible + i <= 0) std::fill(Out + i * C + h * N, Out + i * C + h * N + N, 0.0f);
  if (width <= 0) return;
  std::vector<const float*> K(width), V(width);  // this head's slice of every visible row
  {
    int64_t n = 0;
    for (const auto& sp : spans)
      for (int64_t r = 0; r < sp.rows && n < width; ++r, ++n) {
        K[n] = sp.k + r * C + h * N;
        V[n] = sp.v + r * C + h * N;
      }
  }
  // Query i sees keys [0, first_visible + i): the queries that see key n start at first(n).
  auto first = [&](int64_t n) { return std::max(b0, n - first_visible + 1); };
  auto vis = [&](int64_t i) { return std::min(nk, first_visible + i); };
  std::vector<float> S(nb * width), acc(nb * N, 0.0f);
  // Scores. Entries past a query's visible keys may be computed too; they are never read.
  for (int64_t n0 = 0; n0 < width; n0 += kKeyTile) {
    const int64_t n1 = std::min(width, n0 + kKeyTile);
    int64_t i = first(n0);
    for (; i + 4 <= b1; i += 4) {
      const float* q[4] = {Q + i * C + h * N, Q + (i + 1) * C + h * N, Q + (i + 2) * C + h * N,
                           Q + (i + 3) * C + h * N};
      for (int64_t n = n0; n < n1; ++n) {
        float d[4];
        Dot4(q, K[n], N, d);
        for (int t = 0; t < 4; ++t) S[(i + t - b0) * width + n] = d[t] * scale;
      }
    }
    for (; i < b1; ++i)
      for (int64_t n = n0; n < n1; ++n) S[(i - b0) * width + n] = Dot(Q + i * C + h * N, K[n], N) * scale;
  }
  for (int64_t i = b0; i < b1; ++i)
    if (vis(i) > 0) SoftmaxRow(&S[(i - b0) * width], vis(i));
  for (int64_t n0 = 0; n0 < width; n0 += kKeyTile) {
    const int64_t n1 = std::min(width, n0 + kKeyTile);
    for (int64_t i = first(n0); i < b1; ++i) {
      const int64_t count = std::min(n1, vis(i)) - n0;
      if (count > 0) AccumulateRows<kN>(&S[(i - b0) * width + n0], &V[n0], count, &acc[(i - b0) * N], N);
    }
  }
  for (int64_t i = b0; i < b1; ++i)
    if (first_visible + i > 0) std::copy(&acc[(i - b0) * N], &acc[(i - b0) * N] + N, Out + i * C + h * N);
}

// The body compiled twice: with AVX2 + FMA (chosen once per process when the CPU has them)
// and for the baseline ISA. Every call in a process takes the same one, so decode and
// prefill stay bit-identical to each other.
__attribute__((target("avx2,fma"))) void AttendBlockAvx2(const float* Q, int64_t b0, int64_t b1,
                                                         const std::vector<KvSpan>& spans, int64_t nk,
                                                         int64_t first_visible, float* Out, int64_t C,
                                                         int64_t h, int64_t N) {
  if (N == 64)
    AttendBlockBody<64>(Q, b0, b1, spans, nk, first_visible, Out, C, h, N);
  else
    AttendBlockBody<0>(Q, b0, b1, spans, nk, first_visible, Out, C, h, N);
}
void AttendBlockBase(const float* Q, int64_t b0, int64_t b1, const std::vector<KvSpan>& spans, int64_t nk,
                     int64_t first_visible, float* Out, int64_t C, int64_t h, int64_t N) {
  if (N == 64)
    AttendBlockBody<64>(Q, b0, b1, spans, nk, first_visible, Out, C, h, N);
  else
    AttendBlockBody<0>(Q, b0, b1, spans, nk, first_visible, Out, C, h, N);
}
bool HaveAvx2Fma() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

}  // namespace

void Attend(const float* Q, int64_t nq, const std::vector<KvSpan>& spans, int64_t first_visible,
            float* Out, int64_t C, int64_t H, int64_t N) {
  int64_t nk = 0;
  for (const auto& sp : spans) nk += sp.rows;
  const int64_t nblocks = (nq + kAttendBlock - 1) / kAttendBlock;
  const auto block = HaveAvx2Fma() ? AttendBlockAvx2 : AttendBlockBase;
  ParallelFor(H * nblocks, [&](int64_t job) {
    const int64_t h = job / nblocks, b0 = (job % nblocks) * kAttendBlock;
    block(Q, b0, std::min(nq, b0 + kAttendBlock), spans, nk, first_visible, Out, C, h, N);
  });
}

void CompressionVotes(const float* Q, int64_t nq, const float* K, int64_t npast, float* vote,
                      int64_t C, int64_t H, int64_t N) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(N));
  ParallelFor(H, [&](int64_t h) {
    std::vector<double> acc(npast, 0.0);
    std::vector<float> S;
    for (int64_t b0 = 0; b0 < nq; b0 += kQueryBlock) {
      const int64_t bq = std::min(kQueryBlock, nq - b0);
      S.assign(bq * npast, 0.0f);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, npast, N, scale, Q + b0 * C + h * N, C,
                  K + h * N, C, 0.0f, S.data(), npast);
      for (int64_t i = 0; i < bq; ++i) {
        float* s = S.data() + i * npast;
        SoftmaxRow(s, npast);
        for (int64_t r = 0; r < npast; ++r) acc[r] += s[r];
      }
    }
    for (int64_t r = 0; r < npast; ++r) vote[h * npast + r] = static_cast<float>(acc[r]);
  });
}

}  // namespace rwkvx::cpu
