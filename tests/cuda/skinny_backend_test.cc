// The CUDA backend with CudaBackendOptions::skinny_mma (steps of 5..32 rows on the
// tensor-core skinny kernel, kernels/gemm_skinny.cuh) against the same backend without it
// (cuBLAS, over a dequantized copy for 8-bit weights) and against the fp32 CPU engine:
// batched decode of 9 and 14 sessions and prompts of 5..24 tokens (prefill steps of as
// many rows: past the half weights' limit of 16, within the 8-bit one of 32), in fp16,
// bf16 and both 8-bit formats. Every test skips where no GPU is usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "tests/cuda/cuda_parity_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

struct Variant {
  const char* name;
  bool bf16, fp8, int8;
  double bound;  // rel-L2 between the two paths
};

CudaBackendOptions Opts(const Variant& v, bool skinny) {
  CudaBackendOptions o = GpuOptions(0.3, v.bf16);
  o.fp8_weights = v.fp8;
  o.int8_weights = v.int8;
  o.skinny_mma = skinny;
  return o;
}

// Both backends see the same tokens; every step's logits compared. Both accumulate the
// same half (or exactly decoded 8-bit) products in fp32, in different orders; the 8-bit
// cuBLAS path also rounds q * scale to half first (2^-11 relative a weight): the fp16
// engine's GEMV-vs-GEMM bound (2e-3, MixedDecodeAndPrefillStep) holds for fp16 and 8 bits.
// In bf16 an activation that rounds the other way moves by 2^-8: 10x that bound.
TEST(CudaBackend, SkinnyMmaEqualsCublasPath) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(41);
  const Variant variants[] = {{"fp16", false, false, false, 2e-3}, {"bf16", true, false, false, 2e-2},
                              {"fp8", false, true, false, 2e-3}, {"int8", false, false, true, 2e-3}};
  for (const Variant& v : variants) {
    auto a = Gpu(m, Opts(v, true)), b = Gpu(m, Opts(v, false));
    ASSERT_TRUE(a && b) << v.name;
    const int n = 20;
    std::vector<SessionId> sa, sb;
    for (int k = 0; k < n; ++k) {
      sa.push_back(*a->CreateSession());
      sb.push_back(*b->CreateSession());
    }
    double worst = 0;
    int compared = 0;
    auto cmp = [&](const std::vector<float>& la, const std::vector<float>& lb) {
      ASSERT_EQ(la.size(), lb.size());
      const int V = static_cast<int>(m->shape.vocab);
      for (size_t r = 0; r + V <= la.size(); r += V, ++compared)  // row by row
        worst = std::max(worst, Compare(std::vector<float>(la.begin() + r, la.begin() + r + V),
                                        std::vector<float>(lb.begin() + r, lb.begin() + r + V)).rel_l2);
    };
    std::vector<float> la, lb;
    // Prompts of 5..24 tokens, one session a step (prefill steps of 5..24 rows).
    for (int k = 0; k < n; ++k) {
      const auto p = Tokens(5 + k, 1024, 100 + k);
      ASSERT_TRUE(a->Step({{sa[k], p, true}}, &la).ok());
      ASSERT_TRUE(b->Step({{sb[k], p, true}}, &lb).ok());
      cmp(la, lb);
    }
    // Decode: 14 sessions, then 9 (rows 14 and 9), the same tokens for both.
    for (int i = 0; i < 12; ++i) {
      const int batch = i % 2 ? 9 : 14;
      std::vector<StepInput> ia, ib;
      for (int k = 0; k < batch; ++k) {
        const int32_t tok = static_cast<int32_t>((i * 131 + k * 17) % 1024);
        ia.push_back({sa[k], {tok}, true});
        ib.push_back({sb[k], {tok}, true});
      }
      ASSERT_TRUE(a->Step(ia, &la).ok());
      ASSERT_TRUE(b->Step(ib, &lb).ok());
      cmp(la, lb);
    }
    std::printf("[skinny %s] vs cuBLAS path: worst rel-L2 %.3e over %d logits rows\n", v.name, worst, compared);
    EXPECT_LE(worst, v.bound) << v.name;
    EXPECT_EQ(compared, n + 6 * 14 + 6 * 9) << v.name;
  }
}

// Against the exact engine: one session's prompt (rows 12) and decode steps inside a batch
// of 9, within the fp16 engine's bound (kRelL2Bound).
TEST(CudaBackend, SkinnyMmaParityWithCpu) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(43);
  auto cpu = MakeCpuBackend(m);
  auto gpu = Gpu(m, Opts({"fp16", false, false, false, 0}, true));
  ASSERT_NE(gpu, nullptr);
  std::vector<SessionId> sg;
  for (int k = 0; k < 9; ++k) sg.push_back(*gpu->CreateSession());
  auto sc = *cpu->CreateSession();
  std::vector<float> lc, lg;
  const auto prompt = Tokens(12, 1024, 7);
  ASSERT_TRUE(cpu->Step({{sc, prompt, true}}, &lc).ok());
  for (int k = 0; k < 9; ++k) ASSERT_TRUE(gpu->Step({{sg[k], prompt, k == 0}}, &lg).ok());
  double worst = Compare(lg, lc).rel_l2;
  for (int i = 0; i < 24; ++i) {
    const int32_t tok = static_cast<int32_t>((i * 53 + 3) % 1024);
    ASSERT_TRUE(cpu->Step({{sc, {tok}, true}}, &lc).ok());
    std::vector<StepInput> batch;
    for (int k = 0; k < 9; ++k) batch.push_back({sg[k], {tok}, k == 0});
    ASSERT_TRUE(gpu->Step(batch, &lg).ok());
    worst = std::max(worst, Compare(lg, lc).rel_l2);
  }
  std::printf("[skinny fp16] batch of 9 vs the CPU engine: worst rel-L2 %.3e\n", worst);
  EXPECT_LE(worst, kRelL2Bound);
}

}  // namespace
}  // namespace rwkvx
