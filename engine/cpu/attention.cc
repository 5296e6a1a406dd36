#include "engine/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/ops.h"

namespace rwkvx::cpu {
namespace {

constexpr int64_t kQueryBlock = 128;

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

}  // namespace

void AttendCausal(const float* Q, int64_t nq, const float* K, const float* V, int64_t nk,
                  int64_t offset, float* Out, int64_t C, int64_t H, int64_t N) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(N));
  const int64_t nblocks = (nq + kQueryBlock - 1) / kQueryBlock;
  ParallelFor(H * nblocks, [&](int64_t job) {
    const int64_t h = job / nblocks, b0 = (job % nblocks) * kQueryBlock;
    const int64_t bq = std::min(kQueryBlock, nq - b0);
    // Keys this block can see.
    const int64_t kmax = offset < 0 ? nk : std::min(nk, offset + b0 + bq);
    if (kmax <= 0) return;
    std::vector<float> S(bq * kmax);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, kmax, N, scale, Q + b0 * C + h * N, C,
                K + h * N, C, 0.0f, S.data(), kmax);
    for (int64_t i = 0; i < bq; ++i) {
      float* s = S.data() + i * kmax;
      const int64_t visible = offset < 0 ? kmax : std::min(kmax, offset + b0 + i + 1);
      SoftmaxRow(s, visible);
      std::fill(s + visible, s + kmax, 0.0f);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, N, kmax, 1.0f, S.data(), kmax,
                V + h * N, C, 0.0f, Out + b0 * C + h * N, C);
  });
}

void DecodeAttend(const float* q, const float* K, const float* V,
                  const std::vector<std::pair<int64_t, int64_t>>& segments, const float* k_cur,
                  const float* v_cur, float* out, int64_t C, int64_t H, int64_t N) {
  int64_t nk = 1;
  for (const auto& [b, e] : segments) nk += e - b;
  const float scale = 1.0f / std::sqrt(static_cast<float>(N));
  ParallelFor(H, [&](int64_t h) {
    std::vector<float> s(nk);
    const float* qh = q + h * N;
    int64_t n = 0;
    for (const auto& [b, e] : segments)
      for (int64_t r = b; r < e; ++r) {
        const float* kr = K + r * C + h * N;
        float d = 0;
        for (int64_t j = 0; j < N; ++j) d += qh[j] * kr[j];
        s[n++] = d * scale;
      }
    {
      float d = 0;
      for (int64_t j = 0; j < N; ++j) d += qh[j] * k_cur[h * N + j];
      s[n++] = d * scale;
    }
    SoftmaxRow(s.data(), nk);
    std::vector<double> acc(N, 0.0);
    n = 0;
    for (const auto& [b, e] : segments)
      for (int64_t r = b; r < e; ++r) {
        const float p = s[n++];
        const float* vr = V + r * C + h * N;
        for (int64_t j = 0; j < N; ++j) acc[j] += p * vr[j];
      }
    const float p = s[n];
    for (int64_t j = 0; j < N; ++j) out[h * N + j] = static_cast<float>(acc[j] + p * v_cur[h * N + j]);
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
