// Kernel-level checks of the recurrence, attention and KV compression against plain CPU
// references (float64/float32), small shapes, random inputs, outputs poisoned before each
// launch (projections and row-wise kernels: kernels_rowwise_test.cc). Built only with CUDA;
// skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "engine/backend.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attn_decode.cuh"
#include "kernels/attn_prefill.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/kv_compress.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_chunked.cuh"

#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

// seg_chunks 0: the sequential kernel (rows_per_thread state rows a thread); else the
// chunked one with that segment size. *bits (if given) gets y and the final states.
void CheckWkv7(const std::vector<int>& lens, int seg_chunks, uint32_t seed, int rows_per_thread = 1,
               std::vector<float>* bits = nullptr, bool matrix_pass_a = true) {
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
  p.rows_per_thread = rows_per_thread;
  if (seg_chunks == 0) {
    CK(kernels::LaunchWkv7(p, 0));
  } else {
    kernels::Wkv7ChunkedParams cp;
    cp.base = p;
    cp.max_len = *std::max_element(lens.begin(), lens.end());
    cp.seg_chunks = seg_chunks;
    cp.matrix_pass_a = matrix_pass_a;
    cp.scratch = Dev(std::vector<float>(kernels::Wkv7ChunkedScratchFloats(items, seg_chunks, H), NAN));
    CK(kernels::LaunchWkv7Chunked(cp, 0));
  }
  CK(cudaDeviceSynchronize());
  auto y = Host(p.y, rows * C);
  std::vector<float> out = y;
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
      out.insert(out.end(), st.begin(), st.end());
      for (int i = 0; i < N; ++i)
        for (int j = 0; j < N; ++j)
          worst = std::max(worst, std::abs(s[i * N + j] - st[j * N + i]) / (1 + std::abs(s[i * N + j])));
    }
  EXPECT_LT(worst, 1e-4) << "seg_chunks " << seg_chunks << " rows_per_thread " << rows_per_thread
                         << " matrix pass A " << matrix_pass_a;  // NaN fails too
  std::printf("[wkv7 %s, %d row(s) a thread] lens", !seg_chunks ? "sequential" : matrix_pass_a ? "chunked, matrix pass A" : "chunked",
              rows_per_thread);
  for (int l : lens) std::printf(" %d", l);
  std::printf("  worst rel err vs float64 %.3e\n", worst);
  if (bits) *bits = std::move(out);
}

TEST(CudaKernels, Wkv7MatchesSequentialRecurrence) {
  SKIP_WITHOUT_GPU();
  CheckWkv7({1, 7, 33}, 0, 1);
  CheckWkv7({200}, 0, 2);
}

// Two or four state rows a thread (the sequential kernel and the chunked form's pass A): each
// row's arithmetic is the one-row kernel's, so y and the final states are the same bits
// (Wkv7Params::rows_per_thread is a speed choice only).
TEST(CudaKernels, Wkv7RowsPerThreadSameBits) {
  SKIP_WITHOUT_GPU();
  for (const std::vector<int>& lens : {std::vector<int>{1, 7, 33}, std::vector<int>{128, 1, 1, 200, 16}}) {
    std::vector<float> one, more;
    CheckWkv7(lens, 0, 11, 1, &one);
    for (int rows : {2, 4}) {
      CheckWkv7(lens, 0, 11, rows, &more);
      ASSERT_EQ(more.size(), one.size());
      EXPECT_EQ(0, std::memcmp(more.data(), one.data(), one.size() * sizeof(float))) << rows << " rows a thread";
    }
  }
  // The chunked form's token pass likewise (two segments, a partial last chunk).
  {
    std::vector<float> one, more;
    CheckWkv7({300, 40}, 2, 12, 1, &one, /*matrix_pass_a=*/false);
    for (int rows : {2, 4}) {
      CheckWkv7({300, 40}, 2, 12, rows, &more, /*matrix_pass_a=*/false);
      ASSERT_EQ(more.size(), one.size());
      EXPECT_EQ(0, std::memcmp(more.data(), one.data(), one.size() * sizeof(float))) << rows << " rows, chunked";
    }
  }
  kernels::Wkv7Params bad;
  bad.items = 1;
  bad.rows_per_thread = 3;
  EXPECT_EQ(kernels::LaunchWkv7(bad, 0), cudaErrorInvalidValue);
  cudaGetLastError();
}

// The chunked form: one item, several items of mixed lengths (partial last chunks, items
// shorter than a chunk), several segments (seg_chunks 1 and 2) and one segment.
TEST(CudaKernels, Wkv7ChunkedMatchesRecurrence) {
  SKIP_WITHOUT_GPU();
  for (bool matrix : {true, false}) {  // pass A as matrix products (where it fits) and as the token loop
    CheckWkv7({300}, 3, 3, 1, nullptr, matrix);
    CheckWkv7({1, 7, 33, 100, 257}, 2, 4, 1, nullptr, matrix);
    CheckWkv7({64, 31}, 1, 5, 1, nullptr, matrix);
    CheckWkv7({500, 129}, 64, 6, 1, nullptr, matrix);
  }
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

  // With merge counters (AttnDecodeParams::tickets) the last block of each (item, head)
  // merges the slices in the same kernel: the same bits as the merge kernel, and the
  // counters are left at zero (run twice, then read back).
  __half* d_out2 = Dev(std::vector<__half>(rows * C, __float2half(NAN)));
  unsigned* tickets = Dev(std::vector<unsigned>(items.size() * H, 0u));
  dp.out = d_out2;
  dp.tickets = tickets;
  for (int rep = 0; rep < 2; ++rep) CK(kernels::LaunchAttnDecode(dp, 0));
  CK(cudaDeviceSynchronize());
  auto out2 = Host(d_out2, rows * C);
  for (size_t i = 0; i < defs.size(); ++i) {
    if (defs[i].len != 1) continue;
    for (int c = 0; c < C; ++c) {
      const size_t e = static_cast<size_t>(items[i].row0) * C + c;
      EXPECT_EQ(__half_as_ushort(out[e]), __half_as_ushort(out2[e])) << "item " << i << " column " << c;
    }
  }
  for (unsigned t : Host(tickets, items.size() * H)) EXPECT_EQ(t, 0u);
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

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
