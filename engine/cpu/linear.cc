// Linear layers for the CPU engine: Y[M, N] (+)= X[M, K] @ W[N, K]^T.
//
// Batch invariance by construction: every output element is the same sequence of float
// operations whatever M is and wherever its row sits in the batch (16 partial sums over k
// in steps of 16, the k tail, then a fixed reduction), so a session gives bit-identical
// logits alone or inside any batch. Blocking: threads take blocks of 64 weight rows (kept
// in L2) and sweep all input rows over them in groups of up to 4, so a decode step reads
// the weights once at memory bandwidth and a prefill reuses each block from cache.
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/cpu/ops.h"
#include "engine/tensor.h"

namespace rwkvx::cpu {
namespace {

constexpr int64_t kRowBlock = 64;

template <int R>
inline void DotRows(const float* X, const float* w, float* out, int64_t K) {
  float s[R][16] = {};
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 16; ++j) s[r][j] += X[r * K + k + j] * w[k + j];
  for (int r = 0; r < R; ++r) {
    float t = 0;
    for (int j = 0; j < 16; ++j) t += s[r][j];
    for (int64_t kk = k; kk < K; ++kk) t += X[r * K + kk] * w[kk];
    out[r] = t;
  }
}

template <bool kAvx2>
struct Kernel;

inline float HalfBitsToFloat(uint16_t h);

template <>
struct Kernel<true> {
  // Same per-row operation sequence for every R: lanes 0-7 and 8-15 of a 16-wide stride.
  __attribute__((target("avx2,fma,f16c"))) static __m256 Load8(const float* w) { return _mm256_loadu_ps(w); }
  __attribute__((target("avx2,fma,f16c"))) static __m256 Load8(const uint16_t* w) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  }
  static float One(const float* w) { return *w; }
  static float One(const uint16_t* w) { return HalfBitsToFloat(*w); }

  template <int R, typename WT>
  __attribute__((target("avx2,fma,f16c"))) static void Run(const float* X, const WT* w, float* out, int64_t K) {
    __m256 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 w0 = Load8(w + k), w1 = Load8(w + k + 8);
      for (int r = 0; r < R; ++r) {
        a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(X + r * K + k), w0, a0[r]);
        a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(X + r * K + k + 8), w1, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 s = _mm256_add_ps(a0[r], a1[r]);
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      float t = _mm_cvtss_f32(h);
      for (int64_t kk = k; kk < K; ++kk) t = std::fma(X[r * K + kk], One(w + kk), t);  // explicit: same rounding everywhere
      out[r] = t;
    }
  }
};
// One input row against four weight rows at once: four independent weight streams keep
// more loads in flight (decode is bound by memory latency x parallelism). Each output is
// the same operation sequence as Run<1>, so results do not change.
template <typename WT>
__attribute__((target("avx2,fma,f16c"))) void Dot1x4(const float* x, const WT* w, int64_t K, float* out) {
  __m256 a0[4], a1[4];
  for (int r = 0; r < 4; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    for (int r = 0; r < 4; ++r) {
      a0[r] = _mm256_fmadd_ps(x0, Kernel<true>::Load8(w + r * K + k), a0[r]);
      a1[r] = _mm256_fmadd_ps(x1, Kernel<true>::Load8(w + r * K + k + 8), a1[r]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    const __m256 s = _mm256_add_ps(a0[r], a1[r]);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float t = _mm_cvtss_f32(h);
    for (int64_t kk = k; kk < K; ++kk) t = std::fma(x[kk], Kernel<true>::One(w + r * K + kk), t);
    out[r] = t;
  }
}

// Four input rows against four weight rows with AVX-512: 16 zmm accumulators, each the
// concatenation [a0 | a1] of Run<R>'s two ymm accumulators, reduced the same way, so every
// output is bit-identical to the AVX2 kernels (batch invariance holds across paths).
bool HasAvx512() { return __builtin_cpu_supports("avx512f"); }

__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 Load16(const float* w) { return _mm512_loadu_ps(w); }
__attribute__((target("avx512f,avx2,fma,f16c"))) inline __m512 Load16(const uint16_t* w) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
}

template <typename WT>
__attribute__((target("avx512f,avx2,fma,f16c"))) void Dot4x4(const float* X, const WT* W, int64_t K, float out[4][4]) {
  __m512 acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 w[4];
    for (int j = 0; j < 4; ++j) w[j] = Load16(W + j * K + k);
    for (int i = 0; i < 4; ++i) {
      const __m512 x = _mm512_loadu_ps(X + i * K + k);
      for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const __m256 s = _mm256_add_ps(_mm512_castps512_ps256(acc[i][j]),
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i][j]), 1)));
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      float t = _mm_cvtss_f32(h);
      for (int64_t kk = k; kk < K; ++kk) t = std::fma(X[i * K + kk], Kernel<true>::One(W + j * K + kk), t);
      out[i][j] = t;
    }
}

template <>
struct Kernel<false> {
  template <int R>
  static void Run(const float* X, const float* w, float* out, int64_t K) {
    DotRows<R>(X, w, out, K);
  }
  template <int R>
  static void Run(const float* X, const uint16_t* w, float* out, int64_t K) {
    float row[16];
    float s[R] = {};
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const int64_t n = std::min<int64_t>(16, K - k0);
      for (int64_t j = 0; j < n; ++j) row[j] = HalfBitsToFloat(w[k0 + j]);
      for (int r = 0; r < R; ++r)
        for (int64_t j = 0; j < n; ++j) s[r] += X[r * K + k0 + j] * row[j];
    }
    for (int r = 0; r < R; ++r) out[r] = s[r];
  }
};

inline float HalfBitsToFloat(uint16_t h) { return HalfToFloat(h); }

template <bool kAvx2, typename WT>
void Block(const float* X, const WT* W, float* Y, int64_t M, int64_t n0, int64_t n1, int64_t N,
           int64_t K, bool acc) {
  float out[4];
  if constexpr (kAvx2) {
    if (M == 1) {  // decode: four weight rows per pass
      int64_t n = n0;
      for (; n + 4 <= n1; n += 4) {
        Dot1x4(X, W + n * K, K, out);
        for (int r = 0; r < 4; ++r) Y[n + r] = acc ? Y[n + r] + out[r] : out[r];
      }
      for (; n < n1; ++n) {
        Kernel<true>::template Run<1>(X, W + n * K, out, K);
        Y[n] = acc ? Y[n] + out[0] : out[0];
      }
      return;
    }
  }
  static const bool avx512 = HasAvx512();
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int rows = static_cast<int>(std::min<int64_t>(4, M - m0));
    const float* x = X + m0 * K;
    int64_t n = n0;
    if constexpr (kAvx2) {
      if (avx512 && rows == 4) {  // prefill-sized steps: 4x4 register tiles
        float o[4][4];
        for (; n + 4 <= n1; n += 4) {
          Dot4x4(x, W + n * K, K, o);
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) {
              float& y = Y[(m0 + i) * N + n + j];
              y = acc ? y + o[i][j] : o[i][j];
            }
        }
      }
    }
    for (; n < n1; ++n) {
      const WT* w = W + n * K;
      switch (rows) {
        case 4: Kernel<kAvx2>::template Run<4>(x, w, out, K); break;
        case 3: Kernel<kAvx2>::template Run<3>(x, w, out, K); break;
        case 2: Kernel<kAvx2>::template Run<2>(x, w, out, K); break;
        default: Kernel<kAvx2>::template Run<1>(x, w, out, K); break;
      }
      for (int r = 0; r < rows; ++r) {
        float& y = Y[(m0 + r) * N + n];
        y = acc ? y + out[r] : out[r];
      }
    }
  }
}

bool HasAvx2FmaF16c() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool f16c = c & (1u << 29);  // (clang 14 has no __builtin_cpu_supports("f16c"))
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

template <typename WT>
void LinearT(const float* X, const WT* W, float* Y, int64_t M, int64_t N, int64_t K, bool accumulate) {
  static const bool avx2 = HasAvx2FmaF16c();
  const int64_t jobs = (N + kRowBlock - 1) / kRowBlock;
  ParallelFor(jobs, [&](int64_t j) {
    const int64_t n0 = j * kRowBlock, n1 = std::min(N, n0 + kRowBlock);
    if (avx2)
      Block<true>(X, W, Y, M, n0, n1, N, K, accumulate);
    else
      Block<false>(X, W, Y, M, n0, n1, N, K, accumulate);
  });
}

}  // namespace

void Linear(const float* X, WeightRef W, float* Y, int64_t M, int64_t N, int64_t K, bool accumulate) {
  if (W.f16)
    LinearT(X, W.f16, Y, M, N, K, accumulate);
  else
    LinearT(X, W.f32, Y, M, N, K, accumulate);
}

}  // namespace rwkvx::cpu
