// Kernel-level checks against plain CPU references (float64/float32), small shapes, random
// inputs, outputs poisoned before each launch. Built only with CUDA; skips without a GPU.
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
#include "kernels/attn_decode.cuh"
#include "kernels/attn_prefill.cuh"
#include "kernels/gemv.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/kv_compress.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/token_shift.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_chunked.cuh"

#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x

std::vector<float> Rand(size_t n, std::mt19937& g, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// seg_chunks 0: the sequential kernel; else the chunked one with that segment size.
void CheckWkv7(const std::vector<int>& lens, int seg_chunks, uint32_t seed) {
  std::mt19937 g(seed);
  const int H = 2, C = 128, N = 64;
  std::vector<int> row0;
  int rows = 0;
  for (int l : lens) { row0.push_back(rows); rows += l; }
  const int items = lens.size();
  auto r = Rand(rows * C, g, -1, 1), w = Rand(rows * C, g, 0.5f, 0.999f), k = Rand(rows * C, g, -1, 1),
       v = Rand(rows * C, g, -1, 1), a = Rand(rows * C, g, 0, 1);
  std::vector<float> kk = Rand(rows * C, g, -1, 1);
  for (int row = 0; row < rows; ++row)
    for (int h = 0; h < H; ++h) {
      double s = 0;
      for (int j = 0; j < N; ++j) s += kk[row * C + h * N + j] * kk[row * C + h * N + j];
      for (int j = 0; j < N; ++j) kk[row * C + h * N + j] /= std::sqrt(s);
    }
  // States: [H][64][64] per item, GPU layout transposed.
  std::vector<std::vector<float>> S(items);
  std::vector<float*> dstate(items);
  for (int it = 0; it < items; ++it) {
    S[it] = Rand(H * N * N, g, -0.5f, 0.5f);
    std::vector<float> t(H * N * N);
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j) t[h * 4096 + j * N + i] = S[it][h * 4096 + i * N + j];
    dstate[it] = Dev(t);
  }
  kernels::Wkv7Params p;
  p.r = Dev(r); p.w = Dev(w); p.k = Dev(k); p.v = Dev(v); p.kk = Dev(kk); p.a = Dev(a);
  p.y = Dev(std::vector<float>(rows * C, NAN));
  p.item_row0 = Dev(row0);
  p.item_len = Dev(lens);
  p.item_state = Dev(dstate);
  p.items = items; p.C = C; p.H = H;
  if (seg_chunks == 0) {
    CK(kernels::LaunchWkv7(p, 0));
  } else {
    kernels::Wkv7ChunkedParams cp;
    cp.base = p;
    cp.max_len = *std::max_element(lens.begin(), lens.end());
    cp.seg_chunks = seg_chunks;
    cp.scratch = Dev(std::vector<float>(kernels::Wkv7ChunkedScratchFloats(items, seg_chunks, H), NAN));
    CK(kernels::LaunchWkv7Chunked(cp, 0));
  }
  CK(cudaDeviceSynchronize());
  auto y = Host(p.y, rows * C);
  double worst = 0;
  for (int it = 0; it < items; ++it)
    for (int h = 0; h < H; ++h) {
      std::vector<double> s(S[it].begin() + h * 4096, S[it].begin() + (h + 1) * 4096);
      for (int t = 0; t < lens[it]; ++t) {
        const int o = (row0[it] + t) * C + h * N;
        for (int i = 0; i < N; ++i) {
          double sa = 0, yy = 0;
          for (int j = 0; j < N; ++j) sa -= s[i * N + j] * kk[o + j];
          for (int j = 0; j < N; ++j) {
            s[i * N + j] = s[i * N + j] * w[o + j] + sa * kk[o + j] * a[o + j] + v[o + i] * k[o + j];
            yy += s[i * N + j] * r[o + j];
          }
          worst = std::max(worst, std::abs(yy - y[o + i]) / (1 + std::abs(yy)));
        }
      }
      auto st = Host(dstate[it] + h * 4096, 4096);
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j)
          worst = std::max(worst, std::abs(s[i * N + j] - st[j * N + i]) / (1 + std::abs(s[i * N + j])));
    }
  EXPECT_LT(worst, 1e-4) << "seg_chunks " << seg_chunks;  // NaN fails too
  std::printf("[wkv7 %s] lens", seg_chunks ? "chunked" : "sequential");
  for (int l : lens) std::printf(" %d", l);
  std::printf("  worst rel err vs float64 %.3e\n", worst);
}

TEST(CudaKernels, Wkv7MatchesSequentialRecurrence) {
  SKIP_WITHOUT_GPU();
  CheckWkv7({1, 7, 33}, 0, 1);
  CheckWkv7({200}, 0, 2);
}

// The chunked form: one item, several items of mixed lengths (partial last chunks, items
// shorter than a chunk), several segments (seg_chunks 1 and 2) and one segment.
TEST(CudaKernels, Wkv7ChunkedMatchesRecurrence) {
  SKIP_WITHOUT_GPU();
  CheckWkv7({300}, 3, 3);
  CheckWkv7({1, 7, 33, 100, 257}, 2, 4);
  CheckWkv7({64, 31}, 1, 5);
  CheckWkv7({500, 129}, 64, 6);
}

// Naive attention over fp16-rounded keys/values.
void NaiveAttend(const std::vector<float>& q, const std::vector<__half>& K, const std::vector<__half>& V,
                 const std::vector<int>& rowsel, int C, int h, float* out) {
  std::vector<double> s(rowsel.size());
  double m = -1e300;
  for (size_t t = 0; t < rowsel.size(); ++t) {
    double d = 0;
    for (int j = 0; j < 64; ++j) d += q[h * 64 + j] * __half2float(K[rowsel[t] * C + h * 64 + j]);
    s[t] = d / 8;
    m = std::max(m, s[t]);
  }
  double l = 0;
  for (auto& x : s) { x = std::exp(x - m); l += x; }
  for (int j = 0; j < 64; ++j) {
    double acc = 0;
    for (size_t t = 0; t < rowsel.size(); ++t) acc += s[t] * __half2float(V[rowsel[t] * C + h * 64 + j]);
    out[j] = acc / l;
  }
}

TEST(CudaKernels, DecodeAndPrefillAttentionMatchNaive) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(2);
  const int C = 128, H = 2, B = 16;
  // item 0: decode full (ct 50); item 1: decode sparse (ct 270 -> chunks 0..15, tail
  // 256..270, chunks 12 and 1 selected: three pages); item 2: prefill prefix (ct 20, len
  // 12); item 3: prefill chunk-local (ct 30, len 40); item 4: decode full over three pages
  // (ct 300); item 5: prefill prefix across a page boundary (ct 120, len 30).
  struct Def { int ct, len, prefix, sparse; };
  const std::vector<Def> defs = {{50, 1, 1, 0},  {270, 1, 1, 1}, {20, 12, 1, 0},
                                 {30, 40, 0, 0}, {300, 1, 1, 0}, {120, 30, 1, 0}};
  int rows = 0;
  std::vector<kernels::AttnItem> items;
  std::vector<std::vector<__half>> Ks, Vs;
  std::vector<int> row_item;
  for (size_t i = 0; i < defs.size(); ++i) {
    const Def& d = defs[i];
    const int n = d.ct + d.len;
    auto kf = Rand(n * C, g, -2, 2), vf = Rand(n * C, g, -1, 1);
    std::vector<__half> kh(n * C), vh(n * C);
    for (int e = 0; e < n * C; ++e) { kh[e] = __float2half(kf[e]); vh[e] = __float2half(vf[e]); }
    Ks.push_back(kh);
    Vs.push_back(vh);
    kernels::AttnItem it;
    it.kv = UploadPaged(kh, vh, n, C).view;
    it.ct = d.ct; it.row0 = rows; it.len = d.len; it.prefix = d.prefix; it.sparse = d.sparse;
    items.push_back(it);
    for (int t = 0; t < d.len; ++t) row_item.push_back(i);
    rows += d.len;
  }
  auto q = Rand(rows * C, g, -2, 2);
  const std::vector<int> selected = {-1, -1, 12, 1, -1, -1, -1, -1, -1, -1, -1, -1};  // topk 2: item 1
  auto* d_items = Dev(items);
  auto* d_q = Dev(q);
  __half* d_out = Dev(std::vector<__half>(rows * C, __float2half(NAN)));
  float* part = Dev(std::vector<float>(kernels::AttnDecodeScratchFloats(items.size(), H, 3)));
  kernels::AttnDecodeParams dp;
  dp.items = d_items; dp.q = d_q; dp.selected = Dev(selected); dp.out = d_out; dp.part = part;
  dp.n_items = items.size(); dp.C = C; dp.H = H; dp.chunk = B; dp.topk = 2; dp.splits = 3;
  CK(kernels::LaunchAttnDecode(dp, 0));
  kernels::AttnPrefillParams pp;
  pp.items = d_items; pp.q = d_q; pp.out = d_out; pp.n_items = items.size(); pp.C = C; pp.H = H; pp.chunk = B;
  pp.max_len = 40;
  CK(kernels::LaunchAttnPrefill(pp, 0));
  CK(cudaDeviceSynchronize());
  auto out = Host(d_out, rows * C);
  double worst = 0;
  float ref[64];
  for (size_t i = 0; i < defs.size(); ++i) {
    const Def& d = defs[i];
    for (int t = 0; t < d.len; ++t) {
      std::vector<int> sel;
      if (d.len == 1) {
        if (d.sparse) {
          for (int c : {12, 1}) for (int r = c * B; r < (c + 1) * B; ++r) sel.push_back(r);
          for (int r = (d.ct / B) * B; r <= d.ct; ++r) sel.push_back(r);
        } else {
          for (int r = 0; r <= d.ct; ++r) sel.push_back(r);
        }
      } else {
        const int lo = d.prefix ? 0 : d.ct + (t / B) * B;
        for (int r = lo; r <= d.ct + t; ++r) sel.push_back(r);
      }
      const int row = items[i].row0 + t;
      std::vector<float> qr(q.begin() + row * C, q.begin() + (row + 1) * C);
      for (int h = 0; h < H; ++h) {
        NaiveAttend(qr, Ks[i], Vs[i], sel, C, h, ref);
        for (int j = 0; j < 64; ++j)
          worst = std::max(worst, (double)std::abs(ref[j] - __half2float(out[row * C + h * 64 + j])));
      }
    }
  }
  EXPECT_LT(worst, 2e-3);  // fp16 output rounding (values in [-1, 1])
}


TEST(CudaKernels, KvCompressMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(3);
  const int C = 128, H = 2, ct = 300, window = 40, npast = ct - window, keep = 100;
  for (int nq : {1, 13}) {
    auto kf = Rand(ct * C, g, -2, 2), vf = Rand(ct * C, g, -2, 2);
    std::vector<__half> kh(ct * C), vh(ct * C);
    for (int e = 0; e < ct * C; ++e) { kh[e] = __float2half(kf[e]); vh[e] = __float2half(vf[e]); }
    auto q = Rand(nq * C, g, -3, 3);
    const int new_ct = keep + window;
    kernels::KvCompressParams p;
    p.kv = UploadPaged(kh, vh, ct, C).view;
    const PagedKv out = UploadPaged({}, {}, new_ct, C);
    p.out = out.view;
    p.q = Dev(q);
    p.nq = nq; p.ct = ct; p.npast = npast; p.keep = keep; p.C = C; p.H = H;
    p.votes = Dev(std::vector<float>(H * npast, NAN));
    CK(kernels::LaunchKvCompress(p, 0));
    CK(cudaDeviceSynchronize());
    auto votes = Host(p.votes, H * npast);
    auto nk = DownloadPaged(out, new_ct, false);
    auto nv = DownloadPaged(out, new_ct, true);
    for (int h = 0; h < H; ++h) {
      std::vector<double> ref(npast, 0.0);
      for (int i = 0; i < nq; ++i) {
        std::vector<double> sc(npast);
        double m = -1e300, l = 0;
        for (int t = 0; t < npast; ++t) {
          double d = 0;
          for (int j = 0; j < 64; ++j) d += q[i * C + h * 64 + j] * __half2float(kh[t * C + h * 64 + j]);
          sc[t] = d / 8;
          m = std::max(m, sc[t]);
        }
        for (auto& x : sc) { x = std::exp(x - m); l += x; }
        for (int t = 0; t < npast; ++t) ref[t] += sc[t] / l;
      }
      double vmax = 0;
      for (int t = 0; t < npast; ++t) {
        EXPECT_NEAR(votes[h * npast + t], ref[t], 1e-5 + 1e-4 * ref[t]) << "h " << h << " t " << t;
        vmax = std::max(vmax, ref[t]);
      }
      std::vector<int> order(npast);
      for (int t = 0; t < npast; ++t) order[t] = t;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ref[a] > ref[b]; });
      for (int n = 0; n < new_ct; ++n) {
        // Which old row did the GPU put here (key slices are unique random vectors)?
        int src = -1;
        for (int t = 0; t < ct && src < 0; ++t)
          if (std::memcmp(&nk[n * C + h * 64], &kh[t * C + h * 64], 128) == 0) src = t;
        ASSERT_GE(src, 0);
        EXPECT_EQ(std::memcmp(&nv[n * C + h * 64], &vh[src * C + h * 64], 128), 0);
        const int want = n < keep ? order[n] : npast + (n - keep);
        if (src != want) {  // only a near-tie may reorder
          ASSERT_LT(n, keep);
          EXPECT_NEAR(ref[src], ref[want], 1e-6 * vmax) << "h " << h << " n " << n;
        }
      }
    }
  }
}

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
// bits from every kernel (its first rows alone and within 300 rows).
TEST(CudaKernels, LayerNormShiftFusionEqualsTwoLaunches) {
  SKIP_WITHOUT_GPU();
  struct Out {
    std::vector<float> norm, state;
    std::vector<__half> mix;
  };
  const int n_mix = 6;
  const size_t off = 37;  // this layer's prev vector inside each item's state block
  auto run = [&](int rows, int C, uint32_t seed, Out* o) {
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
    for (int r = 0; r < 5; ++r)
      for (int c = 0; c < C; ++c) {
        ASSERT_EQ(few.norm[r * C + c], many.norm[r * C + c]) << "C " << C << " row " << r << " col " << c;
        ASSERT_EQ(__half2float(few.mix[r * C + c]), __half2float(many.mix[r * C + c])) << "C " << C << " row " << r;
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
