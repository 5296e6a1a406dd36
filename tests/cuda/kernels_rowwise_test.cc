// Kernel-level checks of the projections and the row-wise kernels (GEMV groups, LayerNorm
// with its token-shift fusion, activations) against plain CPU references and against
// each other's bits; small shapes, random inputs. Built only with CUDA; skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/activation.cuh"
#include "kernels/gemv.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/token_shift.cuh"
#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

// A grouped launch computes every job exactly as its own launch would (bit for bit), and
// the activation epilogue matches the float reference.
TEST(CudaKernels, GemvGroupEqualsSeparateLaunches) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(11);
  struct Shape { int out, in; kernels::Act act; bool half_out, accumulate; };
  const Shape shapes[] = {{37, 136, kernels::Act::kNone, false, false}, {64, 136, kernels::Act::kTanh, true, false},
                          {9, 64, kernels::Act::kNone, true, false},   {100, 64, kernels::Act::kSigmoid, true, false},
                          {50, 136, kernels::Act::kReluSq, true, false}, {23, 64, kernels::Act::kNone, false, true}};
  const int nj = sizeof(shapes) / sizeof(shapes[0]);
  for (int rows = 1; rows <= kernels::kGemvMaxRows; ++rows) {
    kernels::GemvGroupParams grp;
    std::vector<kernels::GemvParams> alone;
    std::vector<std::vector<__half>> xs, ws;
    std::vector<std::vector<float>> y0s;
    for (int j = 0; j < nj; ++j) {
      const Shape& sh = shapes[j];
      auto xf = Rand(rows * sh.in, g, -1, 1), wf = Rand(sh.out * sh.in, g, -0.3f, 0.3f);
      std::vector<__half> xh(xf.size()), wh(wf.size());
      for (size_t e = 0; e < xf.size(); ++e) xh[e] = __float2half(xf[e]);
      for (size_t e = 0; e < wf.size(); ++e) wh[e] = __float2half(wf[e]);
      y0s.push_back(Rand(rows * sh.out, g, -1, 1));
      kernels::GemvParams p;
      p.x = Dev(xh);
      p.w = Dev(wh);
      p.rows = rows; p.out = sh.out; p.in = sh.in;
      p.act = sh.act;
      p.accumulate = sh.accumulate;
      kernels::GemvParams q = p;
      if (sh.half_out) {
        p.y_half = Dev(std::vector<__half>(rows * sh.out, __float2half(7.f)));
        q.y_half = Dev(std::vector<__half>(rows * sh.out, __float2half(-7.f)));
      } else {
        p.y = Dev(y0s.back());
        q.y = Dev(y0s.back());
      }
      grp.job[grp.n_jobs++] = p;
      alone.push_back(q);
      xs.push_back(xh);
      ws.push_back(wh);
    }
    CK(kernels::LaunchGemvGroup(grp, 0));
    for (auto& q : alone) CK(kernels::LaunchGemv(q, 0));
    CK(cudaDeviceSynchronize());
    for (int j = 0; j < nj; ++j) {
      const Shape& sh = shapes[j];
      const size_t n = static_cast<size_t>(rows) * sh.out;
      std::vector<float> got(n), ref_alone(n);
      if (sh.half_out) {
        auto a = Host(static_cast<__half*>(grp.job[j].y_half), n), b = Host(static_cast<__half*>(alone[j].y_half), n);
        for (size_t e = 0; e < n; ++e) { got[e] = __half2float(a[e]); ref_alone[e] = __half2float(b[e]); }
      } else {
        got = Host(grp.job[j].y, n);
        ref_alone = Host(alone[j].y, n);
      }
      for (size_t e = 0; e < n; ++e) ASSERT_EQ(got[e], ref_alone[e]) << "rows " << rows << " job " << j << " at " << e;
      for (int r = 0; r < rows; ++r)
        for (int o = 0; o < sh.out; ++o) {
          double v = 0;
          for (int i = 0; i < sh.in; ++i) v += double(__half2float(xs[j][r * sh.in + i])) * __half2float(ws[j][o * sh.in + i]);
          switch (sh.act) {
            case kernels::Act::kTanh: v = std::tanh(v); break;
            case kernels::Act::kSigmoid: v = 1 / (1 + std::exp(-v)); break;
            case kernels::Act::kReluSq: v = v > 0 ? v * v : 0; break;
            default: break;
          }
          if (sh.accumulate) v += y0s[j][r * sh.out + o];
          const double tol = sh.half_out ? 1e-2 + 2e-3 * std::abs(v) : 1e-4;
          EXPECT_NEAR(got[r * sh.out + o], v, tol) << "rows " << rows << " job " << j << " " << r << "," << o;
        }
    }
  }
  kernels::GemvGroupParams bad;
  EXPECT_EQ(kernels::LaunchGemvGroup(bad, 0), cudaErrorInvalidValue);  // no jobs
}

// The decode fusion of LayerNorm and the token-shift mixes equals the two launches, for
// each LayerNorm kernel (the register kernel at 200 and 2560 columns, the row kernel for
// many rows of 2560 and 4000 columns, the generic one past 4096), and a row gets the same
// bits from every kernel (its first rows alone and within 300 rows). The decode forms that
// read before their PDL wait (LayerNormParams::early: the register kernel at 200 columns,
// the slice kernel at 2560 and 4000) give the same bits as the plain ones.
TEST(CudaKernels, LayerNormShiftFusionEqualsTwoLaunches) {
  SKIP_WITHOUT_GPU();
  struct Out {
    std::vector<float> norm, state;
    std::vector<__half> mix;
  };
  const int n_mix = 6;
  const size_t off = 37;  // this layer's prev vector inside each item's state block
  auto run = [&](int rows, int C, uint32_t seed, Out* o, bool early = false) {
    std::mt19937 g(seed), gx(seed + 1), gs(seed + 2);  // apart: a run's first rows do not depend on `rows`
    auto w = Rand(C, g, 0.5, 1.5), b = Rand(C, g, -0.5, 0.5), mix = Rand(n_mix * C, g, 0, 1);
    auto x = Rand(rows * C, gx, -3, 3);
    auto st = Rand(rows * (off + C), gs, -2, 2);
    std::vector<float*> base_a(rows), base_b(rows);
    float* sa = Dev(st);
    float* sb = Dev(st);
    for (int r = 0; r < rows; ++r) { base_a[r] = sa + r * (off + C); base_b[r] = sb + r * (off + C); }
    std::vector<int> row_item(rows), row0(rows), len(rows, 1);
    for (int r = 0; r < rows; ++r) row_item[r] = row0[r] = r;
    kernels::LayerNormParams ln;
    ln.x = Dev(x);
    ln.w = Dev(w);
    ln.b = Dev(b);
    ln.rows = rows;
    ln.C = C;
    ln.early = early;
    kernels::LayerNormParams two = ln;
    two.out = Dev(std::vector<float>(rows * C));
    CK(kernels::LaunchLayerNorm(two, 0));
    kernels::TokenShiftParams ts;
    ts.u = two.out;
    ts.row_item = Dev(row_item);
    ts.item_row0 = Dev(row0);
    ts.item_len = Dev(len);
    ts.item_state = Dev(base_b);
    ts.state_off = off;
    ts.mix = Dev(mix);
    ts.n_mix = n_mix;
    ts.out = Dev(std::vector<__half>(n_mix * rows * C));
    ts.rows = rows;
    ts.items = rows;
    ts.C = C;
    CK(kernels::LaunchTokenShift(ts, 0));
    ln.mix = ts.mix;
    ln.n_mix = n_mix;
    ln.mix_out = Dev(std::vector<__half>(n_mix * rows * C, __float2half(9.f)));
    ln.item_state = Dev(base_a);
    ln.state_off = off;
    CK(kernels::LaunchLayerNorm(ln, 0));
    CK(cudaDeviceSynchronize());
    auto m1 = Host(static_cast<__half*>(ln.mix_out), n_mix * rows * C);
    auto m2 = Host(static_cast<__half*>(ts.out), n_mix * rows * C);
    for (size_t e = 0; e < m1.size(); ++e) EXPECT_EQ(__half2float(m1[e]), __half2float(m2[e])) << "C " << C << " at " << e;
    auto s1 = Host(sa, st.size()), s2 = Host(sb, st.size());
    for (size_t e = 0; e < st.size(); ++e) EXPECT_EQ(s1[e], s2[e]) << "C " << C << " at " << e;
    // The saved vector is now the normed row, and something did change.
    EXPECT_NE(s1[off], st[off]);
    o->norm = Host(two.out, rows * C);
    o->state = s1;
    o->mix = m1;
    // Against a double-precision LayerNorm.
    for (int r = 0; r < rows; r += 37) {
      double mean = 0, var = 0;
      for (int c = 0; c < C; ++c) mean += x[r * C + c];
      mean /= C;
      for (int c = 0; c < C; ++c) var += (x[r * C + c] - mean) * (x[r * C + c] - mean);
      const double inv = 1 / std::sqrt(var / C + 1e-5);
      for (int c = 0; c < C; c += 13)
        EXPECT_NEAR(o->norm[r * C + c], (x[r * C + c] - mean) * inv * w[c] + b[c], 1e-4) << "C " << C << " row " << r;
    }
    if (rows == 5) {
      kernels::LayerNormParams bad = ln;
      bad.row_index = ts.row_item;
      EXPECT_EQ(kernels::LaunchLayerNorm(bad, 0), cudaErrorInvalidValue);  // fusion needs plain rows
    }
  };
  for (int C : {200, 2560, 4000, 5000}) {
    Out few, many;
    run(5, C, 12, &few);  // same seed: rows 0-4 are the same
    run(300, C, 12, &many);
    ASSERT_FALSE(few.norm.empty() || many.norm.empty());
    Out early;
    run(5, C, 12, &early, /*early=*/true);
    EXPECT_TRUE(early.norm == few.norm && early.state == few.state) << "C " << C << ", early reads";
    ASSERT_EQ(early.mix.size(), few.mix.size());
    for (size_t e = 0; e < few.mix.size(); ++e)
      ASSERT_EQ(__half2float(early.mix[e]), __half2float(few.mix[e])) << "C " << C << ", early reads, at " << e;
    for (int r = 0; r < 5; ++r)
      for (int c = 0; c < C; ++c) {
        ASSERT_EQ(few.norm[r * C + c], many.norm[r * C + c]) << "C " << C << " row " << r << " col " << c;
        ASSERT_EQ(__half2float(few.mix[r * C + c]), __half2float(many.mix[r * C + c])) << "C " << C << " row " << r;
      }
  }
}

// The token-shift fusion over items of several rows (LaunchLayerNormShiftRows: prefill and
// mixed steps) equals LayerNorm + LaunchTokenShift: the same mixed halves (fp16 and bf16)
// and the same saved vectors afterwards, for items of 1, 2, 5, 64 and 300 rows in one step
// (a decode item among prompts), 200 / 768 / 2560 / 4000 columns (each width form of the
// kernel) and one or six mixes; launches it cannot take are refused.
TEST(CudaKernels, LayerNormShiftRowsEqualsTwoLaunches) {
  SKIP_WITHOUT_GPU();
  const std::vector<int> lens{5, 1, 300, 2, 64, 1, 5};
  std::vector<int> row_item, row0;
  for (size_t it = 0; it < lens.size(); ++it) {
    row0.push_back(static_cast<int>(row_item.size()));
    for (int j = 0; j < lens[it]; ++j) row_item.push_back(static_cast<int>(it));
  }
  const int rows = static_cast<int>(row_item.size()), items = static_cast<int>(lens.size());
  const size_t off = 11;  // this layer's prev vector inside each item's state block
  int* d_row_item = Dev(row_item);
  int* d_row0 = Dev(row0);
  int* d_len = Dev(lens);
  for (int C : {200, 768, 2560, 4000})
    for (int n_mix : {1, 6})
      for (bool bf16 : {false, true}) {
        std::mt19937 g(C + n_mix + bf16);
        auto w = Rand(C, g, 0.5, 1.5), b = Rand(C, g, -0.5, 0.5), mix = Rand(n_mix * C, g, 0, 1);
        auto x = Rand(static_cast<size_t>(rows) * C, g, -3, 3);
        auto st = Rand(items * (off + C), g, -2, 2);
        float* sa = Dev(st);
        float* sb = Dev(st);
        std::vector<float*> base_a(items), base_b(items);
        for (int i = 0; i < items; ++i) {
          base_a[i] = sa + i * (off + C);
          base_b[i] = sb + i * (off + C);
        }
        kernels::LayerNormParams ln;
        ln.x = Dev(x);
        ln.w = Dev(w);
        ln.b = Dev(b);
        ln.rows = rows;
        ln.C = C;
        ln.bf16 = bf16;
        kernels::LayerNormParams two = ln;
        two.out = Dev(std::vector<float>(static_cast<size_t>(rows) * C));
        CK(kernels::LaunchLayerNorm(two, 0));
        kernels::TokenShiftParams ts;
        ts.u = two.out;
        ts.row_item = d_row_item;
        ts.item_row0 = d_row0;
        ts.item_len = d_len;
        ts.item_state = Dev(base_b);
        ts.state_off = off;
        ts.mix = Dev(mix);
        ts.n_mix = n_mix;
        ts.out = Dev(std::vector<__half>(static_cast<size_t>(n_mix) * rows * C));
        ts.bf16 = bf16;
        ts.rows = rows;
        ts.items = items;
        ts.C = C;
        CK(kernels::LaunchTokenShift(ts, 0));
        ln.mix = ts.mix;
        ln.n_mix = n_mix;
        ln.mix_out = Dev(std::vector<__half>(static_cast<size_t>(n_mix) * rows * C, __float2half(9.f)));
        ln.item_state = Dev(base_a);
        ln.state_off = off;
        const kernels::LayerNormItems li{d_row_item, d_row0, d_len};
        CK(kernels::LaunchLayerNormShiftRows(ln, li, 0));
        CK(cudaDeviceSynchronize());
        const size_t n = static_cast<size_t>(n_mix) * rows * C;
        // Compared as raw 16-bit patterns (fp16 or bf16 alike).
        auto m1 = Host(static_cast<const uint16_t*>(ln.mix_out), n);
        auto m2 = Host(static_cast<const uint16_t*>(ts.out), n);
        size_t diff = 0;
        for (size_t e = 0; e < n; ++e) diff += m1[e] != m2[e];
        EXPECT_EQ(diff, 0u) << "C " << C << " mixes " << n_mix << (bf16 ? " bf16" : " fp16");
        auto s1 = Host(sa, st.size()), s2 = Host(sb, st.size());
        EXPECT_TRUE(s1 == s2) << "C " << C << " mixes " << n_mix << (bf16 ? " bf16" : " fp16") << ": saved vectors";
        EXPECT_NE(s1[off], st[off]);  // the saved vectors did change
        if (C == 4000 && n_mix == 6 && !bf16) {
          kernels::LayerNormParams bad = ln;
          bad.out = two.out;  // the fusion writes no float32 copy
          EXPECT_EQ(kernels::LaunchLayerNormShiftRows(bad, li, 0), cudaErrorInvalidValue);
          kernels::LayerNormItems no_len = li;
          no_len.item_len = nullptr;
          EXPECT_EQ(kernels::LaunchLayerNormShiftRows(ln, no_len, 0), cudaErrorInvalidValue);
          bad = ln;
          bad.C = kernels::kLnShiftRowsMaxC + 1;  // past 16 columns a thread
          EXPECT_EQ(kernels::LaunchLayerNormShiftRows(bad, li, 0), cudaErrorInvalidValue);
          bad = ln;
          bad.mix = nullptr;  // nothing to fuse
          EXPECT_EQ(kernels::LaunchLayerNormShiftRows(bad, li, 0), cudaErrorInvalidValue);
        }
      }
}

// The activation launch (a GEMM's float32 output to half with tanh / sigmoid / relu^2 /
// none): four elements a thread where the buffers allow (aligned, n % 4 == 0), one
// otherwise, with the same bits (the one-element kernel is made to run by an output one
// half off the 8-byte boundary); both near the host's values.
TEST(CudaKernels, ActivationFourWideEqualsOneWide) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(21);
  const size_t n = 4096;
  auto x = Rand(n, g, -6, 6);
  float* in = Dev(x);
  for (bool bf16 : {false, true})
    for (kernels::Act act : {kernels::Act::kNone, kernels::Act::kTanh, kernels::Act::kSigmoid, kernels::Act::kReluSq}) {
      __half* out = Dev(std::vector<__half>(n + 1));
      kernels::ActivationParams p;
      p.in = in;
      p.n = n;
      p.act = act;
      p.bf16 = bf16;
      p.out = out;  // four-wide
      CK(kernels::LaunchActivation(p, 0));
      __half* out1 = Dev(std::vector<__half>(n + 1));
      p.out = out1 + 1;  // 2 bytes off the 8-byte boundary: one-wide
      CK(kernels::LaunchActivation(p, 0));
      CK(cudaDeviceSynchronize());
      auto a = Host(out, n), b = Host(out1 + 1, n);
      ASSERT_EQ(std::memcmp(a.data(), b.data(), n * 2), 0) << "act " << static_cast<int>(act) << " bf16 " << bf16;
      for (size_t i = 0; i < n; i += 7) {
        const float v = x[i];
        double want = v;
        if (act == kernels::Act::kTanh) want = std::tanh(v);
        if (act == kernels::Act::kSigmoid) want = 1 / (1 + std::exp(-v));
        if (act == kernels::Act::kReluSq) want = v > 0 ? double(v) * v : 0;
        uint16_t bits;
        std::memcpy(&bits, &a[i], 2);
        float got;
        if (bf16) {
          const uint32_t f = uint32_t(bits) << 16;
          std::memcpy(&got, &f, 4);
        } else {
          got = __half2float(a[i]);
        }
        EXPECT_NEAR(got, want, (bf16 ? 8e-3 : 1e-3) * std::max(1.0, std::abs(want))) << i;
      }
    }
}

TEST(CudaKernels, GemvMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(4);
  const int out = 37, in = 136;
  for (int rows = 1; rows <= kernels::kGemvMaxRows; ++rows) {
    auto xf = Rand(rows * in, g, -1, 1), wf = Rand(out * in, g, -1, 1), y0 = Rand(rows * out, g, -1, 1);
    std::vector<__half> xh(xf.size()), wh(wf.size());
    for (size_t e = 0; e < xf.size(); ++e) xh[e] = __float2half(xf[e]);
    for (size_t e = 0; e < wf.size(); ++e) wh[e] = __float2half(wf[e]);
    kernels::GemvParams p;
    p.x = Dev(xh);
    p.w = Dev(wh);
    p.y = Dev(y0);
    p.accumulate = true;
    p.rows = rows; p.out = out; p.in = in;
    CK(kernels::LaunchGemv(p, 0));
    kernels::GemvParams ph = p;
    ph.y = nullptr;
    ph.y_half = Dev(std::vector<__half>(rows * out));
    CK(kernels::LaunchGemv(ph, 0));
    CK(cudaDeviceSynchronize());
    auto y = Host(p.y, rows * out);
    auto yh = Host(static_cast<__half*>(ph.y_half), rows * out);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double ref = 0;
        for (int i = 0; i < in; ++i) ref += double(__half2float(xh[r * in + i])) * __half2float(wh[o * in + i]);
        EXPECT_NEAR(y[r * out + o], y0[r * out + o] + ref, 1e-4) << r << "," << o;
        EXPECT_NEAR(__half2float(yh[r * out + o]), ref, 1e-2 + 1e-3 * std::abs(ref)) << r << "," << o;
      }
  }
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
