// 8-bit weights (kernels/fp8.cuh), both formats: the row quantization against a host
// decoder (E4M3: each value the nearest E4M3 of w / scale, the scale max|w| / 448; int8:
// the nearest integer, ties to even, the scale max|w| / 127), the GEMV's 8-bit path
// against a double reference over the dequantized weights (alone and grouped with half
// jobs), and the dequantization as exactly one rounding of q * scale. Built only with
// CUDA; skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/fp8.cuh"
#include "kernels/gemv.cuh"
#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

// E4M3 (OCP FP8, "fn": no infinities; S.1111.111 is NaN): bias 7, subnormals m/8 * 2^-6.
float DecodeE4M3(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return NAN;
  const float v = e == 0 ? std::ldexp(m / 8.f, -6) : std::ldexp(1.f + m / 8.f, e - 7);
  return s ? -v : v;
}

float Decode(kernels::W8 f, uint8_t b) {
  return f == kernels::W8::kInt8 ? static_cast<float>(static_cast<int8_t>(b)) : DecodeE4M3(b);
}
const char* Name(kernels::W8 f) { return f == kernels::W8::kInt8 ? "int8" : "e4m3"; }
constexpr kernels::W8 kFormats[] = {kernels::W8::kE4M3, kernels::W8::kInt8};

struct Quantized {
  std::vector<uint8_t> q;
  std::vector<float> scale;
  uint8_t* dq = nullptr;
  float* dscale = nullptr;
};
Quantized Quantize(const std::vector<float>& w, int rows, int in, kernels::W8 fmt = kernels::W8::kE4M3) {
  Quantized r;
  kernels::Fp8QuantParams p;
  p.fmt = fmt;
  p.w = Dev(w);
  p.q = Dev(std::vector<uint8_t>(w.size(), 0xAA));
  p.scale = Dev(std::vector<float>(rows, -1.f));
  p.rows = rows;
  p.in = in;
  EXPECT_EQ(kernels::LaunchQuantizeFp8Rows(p, 0), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  r.q = Host(p.q, w.size());
  r.scale = Host(p.scale, rows);
  r.dq = p.q;
  r.dscale = p.scale;
  return r;
}

// Rows of different magnitudes (one all zero, one with a single nonzero value, one spanning
// six decades so that part of it lands in the subnormals).
std::vector<float> TestMatrix(int rows, int in, std::mt19937& g) {
  std::vector<float> w = Rand(static_cast<size_t>(rows) * in, g, -1, 1);
  for (int r = 0; r < rows; ++r) {
    const float mag = std::ldexp(1.f, (r % 7) - 4);
    for (int i = 0; i < in; ++i) w[static_cast<size_t>(r) * in + i] *= mag;
  }
  if (rows > 2) {
    std::fill(w.begin(), w.begin() + in, 0.f);  // row 0: zero
    std::fill(w.begin() + in, w.begin() + 2 * in, 0.f);
    w[in + 3] = -2.5f;  // row 1: one value
  }
  if (rows > 3)
    for (int i = 0; i < in; ++i) w[2 * static_cast<size_t>(in) + i] *= std::pow(10.f, -6.f * i / in);
  return w;
}

TEST(CudaKernels, Fp8QuantizeRoundsToNearestE4M3) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(5);
  std::vector<float> codes;
  for (int b = 0; b < 256; ++b)
    if (!std::isnan(DecodeE4M3(static_cast<uint8_t>(b)))) codes.push_back(DecodeE4M3(static_cast<uint8_t>(b)));
  const int rows = 40, in = 272;
  const auto w = TestMatrix(rows, in, g);
  const Quantized qz = Quantize(w, rows, in);
  for (int r = 0; r < rows; ++r) {
    float amax = 0;
    for (int i = 0; i < in; ++i) amax = std::max(amax, std::abs(w[static_cast<size_t>(r) * in + i]));
    const float want = amax > 0 ? amax / kernels::kFp8Max : 1.f;
    ASSERT_EQ(qz.scale[r], want) << "row " << r;
    for (int i = 0; i < in; ++i) {
      const size_t e = static_cast<size_t>(r) * in + i;
      const float x = w[e] / qz.scale[r], got = DecodeE4M3(qz.q[e]);
      ASSERT_FALSE(std::isnan(got)) << r << "," << i;
      ASSERT_LE(std::abs(got), kernels::kFp8Max);
      float best = INFINITY;
      for (float c : codes) best = std::min(best, std::abs(c - x));
      ASSERT_EQ(std::abs(got - x), best) << "row " << r << " col " << i << ": " << x << " -> " << got;
      // 4 significant bits: within 2^-4 relative above 2^-6, steps of 2^-9 below.
      ASSERT_LE(std::abs(got - x), std::max(std::abs(x) / 16, std::ldexp(1.f, -10)));
    }
  }
  EXPECT_EQ(qz.scale[0], 1.f);                      // zero row
  EXPECT_EQ(DecodeE4M3(qz.q[in + 3]), -448.f);      // the one value of row 1 is the row's maximum
}

TEST(CudaKernels, Int8QuantizeRoundsToNearestInteger) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(6);
  const int rows = 40, in = 272;
  auto w = TestMatrix(rows, in, g);
  // Row 5: maximum 127/64, so the scale is exactly 2^-6 and the other values (k + 0.5) / 64
  // lie exactly halfway between two codes (ties go to the even code).
  w[5 * in] = 127.f / 64;
  for (int i = 1; i < in; ++i) w[5 * in + i] = ((i % 254) - 127 + 0.5f) / 64;
  const Quantized qz = Quantize(w, rows, in, kernels::W8::kInt8);
  for (int r = 0; r < rows; ++r) {
    float amax = 0;
    for (int i = 0; i < in; ++i) amax = std::max(amax, std::abs(w[static_cast<size_t>(r) * in + i]));
    const float want = amax > 0 ? amax / kernels::kInt8Max : 1.f;
    ASSERT_EQ(qz.scale[r], want) << "row " << r;
    for (int i = 0; i < in; ++i) {
      const size_t e = static_cast<size_t>(r) * in + i;
      const float x = w[e] / qz.scale[r];
      const int8_t got = static_cast<int8_t>(qz.q[e]);
      ASSERT_GE(got, -127);
      ASSERT_EQ(got, static_cast<int8_t>(std::clamp(std::nearbyint(x), -127.f, 127.f)))
          << "row " << r << " col " << i << ": " << x;
      ASSERT_LE(std::abs(got - x), 0.5f + 1e-4f);
    }
  }
  EXPECT_EQ(qz.scale[0], 1.f);                         // zero row
  EXPECT_EQ(static_cast<int8_t>(qz.q[in + 3]), -127);  // the one value of row 1 is the row's maximum
  EXPECT_EQ(qz.scale[5], 1.f / 64);
  EXPECT_EQ(static_cast<int8_t>(qz.q[5 * in + 1]), -126);  // -126.5 -> -126
  EXPECT_EQ(static_cast<int8_t>(qz.q[5 * in + 2]), -124);  // -124.5 -> -124
}

// The 8-bit GEMV for 1..4 rows equals the double-precision product over the dequantized
// weights (fp32 accumulation: relative 1e-5 of sum |w x|), alone and in a group beside half
// jobs, whose bits the group leaves unchanged.
TEST(CudaKernels, Fp8GemvMatchesDequantizedReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(7);
  struct Sh { int out, in; bool half_out, accumulate; };
  const Sh shapes[] = {{37, 272, false, false}, {64, 768, true, false}, {9, 16, false, true}, {130, 2560, false, false}};
  for (kernels::W8 fmt : kFormats)
  for (int rows = 1; rows <= kernels::kGemvMaxRows; ++rows) {
    kernels::GemvGroupParams grp;
    std::vector<kernels::GemvParams> alone;
    struct Ref { std::vector<float> wdq; std::vector<__half> x; std::vector<float> y0; };
    std::vector<Ref> refs;
    for (const Sh& sh : shapes) {
      const auto wf = TestMatrix(sh.out, sh.in, g);
      const Quantized qz = Quantize(wf, sh.out, sh.in, fmt);
      Ref ref;
      ref.wdq.resize(wf.size());
      for (size_t e = 0; e < wf.size(); ++e) ref.wdq[e] = Decode(fmt, qz.q[e]) * qz.scale[e / sh.in];
      const auto xf = Rand(static_cast<size_t>(rows) * sh.in, g, -1, 1);
      for (float v : xf) ref.x.push_back(__float2half(v));
      ref.y0 = Rand(static_cast<size_t>(rows) * sh.out, g, -1, 1);
      kernels::GemvParams p;
      p.x = Dev(ref.x);
      p.w = qz.dq;
      p.w_scale = qz.dscale;
      p.w_int8 = fmt == kernels::W8::kInt8;
      p.rows = rows; p.out = sh.out; p.in = sh.in;
      p.accumulate = sh.accumulate;
      if (sh.half_out) p.y_half = Dev(std::vector<__half>(static_cast<size_t>(rows) * sh.out));
      else p.y = Dev(ref.y0);
      kernels::GemvParams q = p;
      if (sh.half_out) q.y_half = Dev(std::vector<__half>(static_cast<size_t>(rows) * sh.out));
      else q.y = Dev(ref.y0);
      grp.job[grp.n_jobs++] = p;
      alone.push_back(q);
      refs.push_back(std::move(ref));
    }
    // A half job in the same group: the same bits as its own launch.
    const int in_h = 136, out_h = 21;
    std::vector<__half> xh, wh;
    for (float v : Rand(static_cast<size_t>(rows) * in_h, g, -1, 1)) xh.push_back(__float2half(v));
    for (float v : Rand(static_cast<size_t>(out_h) * in_h, g, -0.3f, 0.3f)) wh.push_back(__float2half(v));
    kernels::GemvParams h;
    h.x = Dev(xh);
    h.w = Dev(wh);
    h.rows = rows; h.out = out_h; h.in = in_h;
    h.y = Dev(std::vector<float>(static_cast<size_t>(rows) * out_h));
    kernels::GemvParams h_alone = h;
    h_alone.y = Dev(std::vector<float>(static_cast<size_t>(rows) * out_h));
    grp.job[grp.n_jobs++] = h;
    CK(kernels::LaunchGemvGroup(grp, 0));
    for (auto& q : alone) CK(kernels::LaunchGemv(q, 0));
    CK(kernels::LaunchGemv(h_alone, 0));
    CK(cudaDeviceSynchronize());
    EXPECT_EQ(Host(h.y, static_cast<size_t>(rows) * out_h), Host(h_alone.y, static_cast<size_t>(rows) * out_h));
    for (size_t j = 0; j < refs.size(); ++j) {
      const Sh& sh = shapes[j];
      const size_t n = static_cast<size_t>(rows) * sh.out;
      std::vector<float> got(n), got_alone(n);
      if (sh.half_out) {
        auto a = Host(static_cast<__half*>(grp.job[j].y_half), n), b = Host(static_cast<__half*>(alone[j].y_half), n);
        for (size_t e = 0; e < n; ++e) { got[e] = __half2float(a[e]); got_alone[e] = __half2float(b[e]); }
      } else {
        got = Host(grp.job[j].y, n);
        got_alone = Host(alone[j].y, n);
      }
      ASSERT_EQ(got, got_alone) << Name(fmt) << " rows " << rows << " job " << j;
      for (int r = 0; r < rows; ++r)
        for (int o = 0; o < sh.out; ++o) {
          double v = 0, mag = 0;
          for (int i = 0; i < sh.in; ++i) {
            const double t = double(__half2float(refs[j].x[static_cast<size_t>(r) * sh.in + i])) *
                             refs[j].wdq[static_cast<size_t>(o) * sh.in + i];
            v += t;
            mag += std::abs(t);
          }
          if (sh.accumulate) v += refs[j].y0[static_cast<size_t>(r) * sh.out + o];
          const double tol = sh.half_out ? 1e-5 * mag + std::abs(v) / 1024 : 1e-5 * mag + 1e-6;
          ASSERT_NEAR(got[static_cast<size_t>(r) * sh.out + o], v, tol)
              << Name(fmt) << " rows " << rows << " job " << j << " " << r << "," << o;
        }
    }
  }
  kernels::GemvParams odd;  // 8-bit rows need in % 16 == 0
  odd.rows = 1; odd.out = 4; odd.in = 24;
  odd.w = odd.x = Dev(std::vector<uint8_t>(256));
  odd.w_scale = Dev(std::vector<float>(4, 1.f));
  odd.y = Dev(std::vector<float>(4));
  EXPECT_EQ(kernels::LaunchGemv(odd, 0), cudaErrorInvalidValue);
}

// DequantFp8 is one rounding of the float product q * scale, to fp16 and to bf16.
TEST(CudaKernels, Fp8DequantIsOneRounding) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(9);
  const int rows = 50, in = 96;
  const auto w = TestMatrix(rows, in, g);
  for (kernels::W8 fmt : kFormats)
  for (bool bf16 : {false, true}) {
    const Quantized qz = Quantize(w, rows, in, fmt);
    kernels::Fp8DequantParams d;
    d.fmt = fmt;
    d.q = qz.dq;
    d.scale = qz.dscale;
    d.out = Dev(std::vector<uint16_t>(w.size(), 0xFFFF));
    d.bf16 = bf16;
    d.rows = rows;
    d.in = in;
    CK(kernels::LaunchDequantFp8(d, 0));
    CK(cudaDeviceSynchronize());
    const auto got = Host(static_cast<uint16_t*>(d.out), w.size());
    for (size_t e = 0; e < w.size(); ++e) {
      const float v = Decode(fmt, qz.q[e]) * qz.scale[e / in];
      uint16_t want;
      if (bf16) {
        const __nv_bfloat16 b = __float2bfloat16_rn(v);
        std::memcpy(&want, &b, 2);
      } else {
        const __half h = __float2half_rn(v);
        std::memcpy(&want, &h, 2);
      }
      ASSERT_EQ(got[e], want) << Name(fmt) << (bf16 ? " bf16 " : " fp16 ") << e;
    }
  }
  const Quantized qz = Quantize(w, rows, in);
  kernels::Fp8DequantParams bad;
  bad.q = qz.dq;
  bad.scale = qz.dscale;
  bad.out = Dev(std::vector<uint16_t>(16));
  bad.rows = 1;
  bad.in = 8;
  EXPECT_EQ(kernels::LaunchDequantFp8(bad, 0), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
