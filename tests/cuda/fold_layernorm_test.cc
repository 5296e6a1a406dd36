// Decode steps with the LayerNorms folded into the GEMV groups (CudaBackendOptions::
// fold_layernorm, kernels/gemv.cuh GemvFold / GemvSave) against the same steps with the
// LayerNorm kernel: the folded prologue runs the LayerNorm kernel's arithmetic, so logits
// and the exported state (the token-shift vectors the next group copies) are the same bits.
// Decode steps of 1..4 sessions (folded), 7 (the skinny path: not folded) and a mixed step;
// graphs and eager; fp16, bf16 and int8 weights; rows of 256 and 2048 (four outputs a
// warp). Skips without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/snapshot.h"
#include "tests/cuda/cuda_parity_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

constexpr int kV = 1024;

TEST(CudaFoldLayerNorm, FoldedDecodeEqualsLayerNormKernel) {
  SKIP_WITHOUT_GPU();
  // C 256 (one output a warp) and C 2048 (four: CudaBackend::FoldOutsPerWarp).
  for (int C : {256, 2048}) {
    auto m = C == 256 ? SparseTestModel(61) : MakeRandomModel(Shape(2048, 2, 1, kV), 67, "t");
    enum class W { kFp16, kBf16, kInt8 };
    auto run = [&](bool fold, bool graphs, W wt, std::string* state) {
      CudaBackendOptions o = GpuOptions();
      o.fold_layernorm = fold;
      o.cuda_graphs = graphs;
      o.bf16 = wt == W::kBf16;
      o.int8_weights = wt == W::kInt8;
      auto b = Gpu(m, o);
      std::vector<float> out, l;
      if (!b) return out;
      std::vector<SessionId> ids;
      std::vector<StepInput> pre;
      for (int i = 0; i < 7; ++i) {
        ids.push_back(*b->CreateSession());
        pre.push_back({ids.back(), Tokens(9 + 11 * i, kV, 500 + i), false});
      }
      EXPECT_TRUE(b->Step(pre, &l).ok());
      std::vector<int32_t> tok(7, 3);
      for (int st = 0; st < 12; ++st) {
        const int n = st == 9 ? 7 : 1 + st % 4;  // 1, 2, 3, 4 sessions; step 9: 7 (not folded)
        std::vector<StepInput> in;
        for (int i = 0; i < n; ++i) in.push_back({ids[i], {tok[i]}, true});
        if (st == 6) in.push_back({ids[6], Tokens(5, kV, 77), true});  // a mixed step (not folded)
        EXPECT_TRUE(b->Step(in, &l).ok());
        for (int i = 0; i < n; ++i) tok[i] = Argmax(l.data() + static_cast<size_t>(i) * kV, kV);
        out.insert(out.end(), l.begin(), l.end());
      }
      for (auto id : ids) {
        auto s = b->ExportSession(id);
        EXPECT_TRUE(s.ok());
        if (s.ok()) {
          *state += SerializeSnapshot(*m, *s);  // every float of the state, exactly
        }
      }
      return out;
    };
    for (W wt : {W::kFp16, W::kBf16, W::kInt8})
      for (bool graphs : {true, false}) {
        std::string sf, sk;
        const std::vector<float> folded = run(true, graphs, wt, &sf), kernel = run(false, graphs, wt, &sk);
        ASSERT_FALSE(folded.empty());
        const char* w = wt == W::kFp16 ? "fp16" : wt == W::kBf16 ? "bf16" : "int8";
        EXPECT_TRUE(SameBits(folded, kernel)) << "C " << C << " " << w << (graphs ? " graphs" : " eager");
        EXPECT_TRUE(sf == sk) << "state C " << C << " " << w << (graphs ? " graphs" : " eager");
        std::printf("[fold layernorm] C %d %s %s: %zu logits %s, state %s\n", C, w, graphs ? "graphs" : "eager",
                    folded.size(), SameBits(folded, kernel) ? "identical" : "DIFFERENT",
                    sf == sk ? "identical" : "DIFFERENT");
      }
  }
}

}  // namespace
}  // namespace rwkvx
