// The GEMV with several warps a row (kernels/gemv.cuh, GemvParams::ksplit; CudaBackendOptions::
// gemv_split): each split against a float64 reference, the same bits in a group and alone
// and on a second run, bad values refused; and at the backend, decode steps with the split
// forced on agree with the plain GEMV (within float rounding) and keep the bit-equalities the
// other options promise (programmatic dependent launch on and off, the folded LayerNorm).
// Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/model.h"
#include "engine/snapshot.h"
#include "kernels/gemv.cuh"
#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_parity_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

// Every split of 1, 2 and 4 warps a row, on inputs of 136 (fewer loads than a split's
// warps have lanes: some warps sum nothing), 1024 and 3072 columns, 1..4 rows, float
// accumulating and half outputs (with an activation): within float rounding of the float64
// sums; a group of jobs with different splits (a launch per split) gives each job's bits alone, and a second
// run the same bits.
TEST(CudaKernels, GemvSplitMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(21);
  struct Shape { int out, in; };
  const Shape shapes[] = {{37, 136}, {50, 1024}, {9, 3072}};
  const int splits[] = {1, 2, 4};
  for (int rows = 1; rows <= kernels::kGemvMaxRows; ++rows)
    for (const Shape& sh : shapes) {
      auto xf = Rand(static_cast<size_t>(rows) * sh.in, g, -1, 1), wf = Rand(static_cast<size_t>(sh.out) * sh.in, g, -0.3f, 0.3f);
      const auto y0 = Rand(static_cast<size_t>(rows) * sh.out, g, -1, 1);
      std::vector<__half> xh(xf.size()), wh(wf.size());
      for (size_t e = 0; e < xf.size(); ++e) xh[e] = __float2half(xf[e]);
      for (size_t e = 0; e < wf.size(); ++e) wh[e] = __float2half(wf[e]);
      const __half* x = Dev(xh);
      const __half* w = Dev(wh);
      std::vector<double> ref(static_cast<size_t>(rows) * sh.out);
      for (int r = 0; r < rows; ++r)
        for (int o = 0; o < sh.out; ++o) {
          double v = 0;
          for (int i = 0; i < sh.in; ++i)
            v += double(__half2float(xh[static_cast<size_t>(r) * sh.in + i])) * __half2float(wh[static_cast<size_t>(o) * sh.in + i]);
          ref[static_cast<size_t>(r) * sh.out + o] = v;
        }
      const size_t n = static_cast<size_t>(rows) * sh.out;
      kernels::GemvGroupParams grp;  // every split in one group (a launch per split), accumulating float outputs
      std::vector<std::vector<float>> alone_y;
      for (int k : splits) {
        kernels::GemvParams p;
        p.x = x;
        p.w = w;
        p.rows = rows; p.out = sh.out; p.in = sh.in;
        p.ksplit = k;
        p.accumulate = true;
        p.y = Dev(y0);
        kernels::GemvParams q = p;  // alone, twice
        q.y = Dev(y0);
        grp.job[grp.n_jobs++] = p;
        CK(kernels::LaunchGemv(q, 0));
        CK(cudaDeviceSynchronize());
        alone_y.push_back(Host(q.y, n));
        kernels::GemvParams again = p;
        again.y = Dev(y0);
        CK(kernels::LaunchGemv(again, 0));
        CK(cudaDeviceSynchronize());
        EXPECT_TRUE(SameBits(Host(again.y, n), alone_y.back())) << "second run, split " << k;
        kernels::GemvParams h = p;  // half output with relu^2
        h.accumulate = false;
        h.y = nullptr;
        h.act = kernels::Act::kReluSq;
        h.y_half = Dev(std::vector<__half>(n, __float2half(9.f)));
        CK(kernels::LaunchGemv(h, 0));
        CK(cudaDeviceSynchronize());
        const auto yh = Host(static_cast<const __half*>(h.y_half), n);
        for (size_t e = 0; e < n; ++e) {
          const double want = ref[e] > 0 ? ref[e] * ref[e] : 0;
          EXPECT_NEAR(__half2float(yh[e]), want, 1e-2 + 2e-3 * std::abs(want)) << "split " << k << " at " << e;
        }
      }
      CK(kernels::LaunchGemvGroup(grp, 0));
      CK(cudaDeviceSynchronize());
      for (int j = 0; j < grp.n_jobs; ++j) {
        const auto got = Host(grp.job[j].y, n);
        EXPECT_TRUE(SameBits(got, alone_y[j])) << "rows " << rows << " in " << sh.in << " split " << splits[j] << ": group vs alone";
        for (size_t e = 0; e < n; ++e)
          EXPECT_NEAR(got[e], y0[e] + ref[e], 2e-5 * (1 + std::sqrt(double(sh.in))))
              << "rows " << rows << " in " << sh.in << " split " << splits[j] << " at " << e;
      }
    }
  kernels::GemvParams bad;
  bad.x = bad.w = reinterpret_cast<const void*>(16);
  bad.y = reinterpret_cast<float*>(16);
  bad.rows = 1; bad.out = 8; bad.in = 64;
  for (int k : {0, 3, 8, 16, -2}) {
    bad.ksplit = k;
    EXPECT_EQ(kernels::LaunchGemv(bad, 0), cudaErrorInvalidValue) << "split " << k;
  }
}

constexpr int kV = 1024;

// Decode steps of 1..4 sessions after a prefill, on a fixed token script (no feedback, so
// that runs within rounding of each other stay on the same tokens); logits of every step and
// each session's exported state (every float). Options from `o`.
std::vector<float> RunSteps(std::shared_ptr<const Model> m, const CudaBackendOptions& o, std::string* state) {
  auto b = Gpu(m, o);
  std::vector<float> out, l;
  if (!b) return out;
  std::vector<SessionId> ids;
  std::vector<StepInput> pre;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(*b->CreateSession());
    pre.push_back({ids.back(), Tokens(30 + 7 * i, kV, 900 + i), false});
  }
  EXPECT_TRUE(b->Step(pre, &l).ok());
  const std::vector<int32_t> script = Tokens(40, kV, 31);
  for (int st = 0; st < 10; ++st) {
    const int n = 1 + st % 4;
    std::vector<StepInput> in;
    for (int i = 0; i < n; ++i) in.push_back({ids[i], {script[4 * st + i]}, true});
    EXPECT_TRUE(b->Step(in, &l).ok());
    out.insert(out.end(), l.begin(), l.end());
  }
  for (auto id : ids) {
    auto s = b->ExportSession(id);
    EXPECT_TRUE(s.ok());
    if (s.ok()) *state += SerializeSnapshot(*m, *s);
  }
  return out;
}

// The backend with gemv_split forced to 2 and 4 (the test model's widths take 1 under the
// auto rule; its 256-wide products have one run of 32 loads a row, so only warp 0 of a split
// sums anything there, and the 1024-wide channel-mix value product is the one split in
// earnest: GemvSplitMatchesReference covers the wide inputs): logits within float rounding of the plain GEMV's (fp16 and int8 weights), and
// with the split the same bits with and without programmatic dependent launch and with the
// LayerNorm folded into the GEMV groups or not (the fold runs the split's sums too).
TEST(CudaBackend, GemvSplitStepsAgree) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(71);
  for (bool int8 : {false, true}) {
    CudaBackendOptions o = GpuOptions();
    o.int8_weights = int8;
    std::string s0;
    o.gemv_split = 0;
    const std::vector<float> plain = RunSteps(m, o, &s0);
    ASSERT_FALSE(plain.empty());
    double ref_max = 0;
    for (float v : plain) ref_max = std::max(ref_max, double(std::abs(v)));
    for (int k : {2, 4}) {
      o.gemv_split = k;
      o.pdl = true;
      o.fold_layernorm = false;
      std::string sk, sp, sf;
      const std::vector<float> split = RunSteps(m, o, &sk);
      ASSERT_EQ(split.size(), plain.size());
      double max_diff = 0;
      for (size_t i = 0; i < plain.size(); ++i) max_diff = std::max(max_diff, double(std::abs(split[i] - plain[i])));
      // fp32 sums in another order, rounded to fp16 between layers: ~1e-3 of the logits' scale.
      EXPECT_LE(max_diff, 5e-3 * ref_max) << "split " << k << (int8 ? " int8" : " fp16");
      o.pdl = false;
      const std::vector<float> no_pdl = RunSteps(m, o, &sp);
      EXPECT_TRUE(SameBits(split, no_pdl)) << "split " << k << ": pdl on/off";
      EXPECT_TRUE(sk == sp) << "split " << k << ": state, pdl on/off";
      o.pdl = true;
      o.fold_layernorm = true;
      const std::vector<float> folded = RunSteps(m, o, &sf);
      EXPECT_TRUE(SameBits(split, folded)) << "split " << k << ": folded LayerNorm";
      EXPECT_TRUE(sk == sf) << "split " << k << ": state, folded LayerNorm";
      std::printf("[gemv split] %s k %d: max |diff| %.3g of max |logit| %.3g; pdl off %s, folded %s\n",
                  int8 ? "int8" : "fp16", k, max_diff, ref_max, SameBits(split, no_pdl) ? "identical" : "DIFFERENT",
                  SameBits(split, folded) ? "identical" : "DIFFERENT");
    }
  }
  CudaBackendOptions bad = GpuOptions();
  for (int k : {-2, 3, 8, 16}) {
    bad.gemv_split = k;
    EXPECT_FALSE(MakeCudaBackend(m, bad).ok()) << "gemv_split " << k;
  }
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
