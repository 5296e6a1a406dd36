#include "engine/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/cpu/ops.h"

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

// The dot product of two N-vectors in one fixed order: 8 lanes (lane l sums the elements
// l, l + 8, ...), then a fixed tree. Vectorizes without reassociation.
inline float Dot(const float* a, const float* b, int64_t N) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= N; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  for (int l = 0; d < N; ++d, ++l) acc[l] += a[d] * b[d];
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

}  // namespace

void Attend(const float* Q, int64_t nq, const std::vector<KvSpan>& spans, int64_t first_visible,
            float* Out, int64_t C, int64_t H, int64_t N) {
  int64_t nk = 0;
  for (const auto& sp : spans) nk += sp.rows;
  const float scale = 1.0f / std::sqrt(static_cast<float>(N));
  const int64_t nblocks = (nq + kAttendBlock - 1) / kAttendBlock;
  ParallelFor(H * nblocks, [&](int64_t job) {
    const int64_t h = job / nblocks, b0 = (job % nblocks) * kAttendBlock;
    const int64_t b1 = std::min(nq, b0 + kAttendBlock);
    std::vector<float> s(std::max<int64_t>(nk, 1)), acc(N);
    for (int64_t i = b0; i < b1; ++i) {
      const int64_t vis = std::min(nk, first_visible + i);
      float* out = Out + i * C + h * N;
      if (vis <= 0) {
        std::fill(out, out + N, 0.0f);
        continue;
      }
      const float* qh = Q + i * C + h * N;
      int64_t n = 0;
      for (const auto& sp : spans)
        for (int64_t r = 0; r < sp.rows && n < vis; ++r) s[n++] = Dot(qh, sp.k + r * C + h * N, N) * scale;
      SoftmaxRow(s.data(), vis);
      std::fill(acc.begin(), acc.end(), 0.0f);
      n = 0;
      for (const auto& sp : spans)
        for (int64_t r = 0; r < sp.rows && n < vis; ++r) {
          const float p = s[n++];
          const float* vr = sp.v + r * C + h * N;
          for (int64_t j = 0; j < N; ++j) acc[j] += p * vr[j];
        }
      std::copy(acc.begin(), acc.end(), out);
    }
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
