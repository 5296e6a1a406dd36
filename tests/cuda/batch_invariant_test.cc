// The CUDA backend's batch-invariant mode (CudaBackendOptions::batch_invariant): a
// session's logits and state are the same bits
//   - whatever else is in its steps (alone, or among 6, 39 or 70 others, with prompt chunks
//     of other sessions in the same steps; decode steps replayed from padded graphs), on the
//     full-attention path (keys past 512) and on the sparse path (per-item splits);
//   - however its prompt is cut into calls below the split-invariant length (one call; a
//     single token, a long call, a decode-path last token; token by token; calls of 100),
//     and the decode steps after it;
// and it stays within the fp16 bound of the CPU reference. Skips without a GPU.
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

CudaBackendOptions Invariant(bool graphs = true) {
  CudaBackendOptions o = GpuOptions();
  o.batch_invariant = true;
  o.cuda_graphs = graphs;
  return o;
}

// Full path: chunks of 256, top-4 (threshold 1024 > every context here). Sparse: chunks of
// 16, top-2 (threshold 32: sparse decode, chunk-local prefill past it).
std::shared_ptr<Model> TestModel(bool sparse, uint64_t seed) {
  auto m = MakeRandomModel(Shape(256, 4, 2, kV), seed, "t");
  m->attn.chunk_size = sparse ? 16 : 256;
  m->attn.topk = sparse ? 2 : 4;
  m->attn.max_kv_cache_size = 0;
  return m;
}

std::vector<float> Row(const std::vector<float>& l, int r) {
  return std::vector<float>(l.begin() + static_cast<size_t>(r) * kV, l.begin() + static_cast<size_t>(r + 1) * kV);
}

TEST(CudaBatchInvariant, ReportsItself) {
  SKIP_WITHOUT_GPU();
  auto m = TestModel(false, 3);
  auto plain = Gpu(m, GpuOptions());
  auto inv = Gpu(m, Invariant());
  ASSERT_TRUE(plain && inv);
  EXPECT_FALSE(plain->SplitInvariant());
  EXPECT_TRUE(inv->SplitInvariant());
}

// Session 0 alone (a 600-token prompt in one call, then 24 greedy decode steps) against
// the same calls inside batches: the other sessions' prompts (5..700 tokens) share the
// first step, a new session's prompt chunk joins decode step 5 (a mixed step), the others
// decode random tokens. Every logit of session 0 must be the same bits.
TEST(CudaBatchInvariant, SessionBitsDoNotDependOnTheBatch) {
  SKIP_WITHOUT_GPU();
  for (bool sparse : {false, true}) {
    auto m = TestModel(sparse, sparse ? 41 : 43);
    auto gpu = Gpu(m, Invariant());
    ASSERT_NE(gpu, nullptr);
    const std::vector<int32_t> prompt = Tokens(600, kV, 5);
    std::vector<std::vector<float>> ref;
    {
      auto s = *gpu->CreateSession();
      std::vector<float> l;
      ASSERT_TRUE(gpu->Step({{s, prompt, true}}, &l).ok());
      ref.push_back(l);
      for (int t = 0; t < 24; ++t) {
        ASSERT_TRUE(gpu->Step({{s, {Argmax(l.data(), kV)}, true}}, &l).ok());
        ref.push_back(l);
      }
      ASSERT_TRUE(gpu->FreeSession(s).ok());
    }
    for (int B : {7, 40, 71}) {
      std::vector<SessionId> ids;
      for (int b = 0; b < B; ++b) ids.push_back(*gpu->CreateSession());
      std::vector<StepInput> in;
      for (int b = 0; b < B; ++b)
        in.push_back({ids[b], b == 0 ? prompt : Tokens(5 + (53 * b) % 700, kV, 100 + b), true});
      std::vector<float> l;
      ASSERT_TRUE(gpu->Step(in, &l).ok());
      int same = SameBits(Row(l, 0), ref[0]);
      SessionId late = 0;
      for (int t = 0; t < 24; ++t) {
        in.clear();
        in.push_back({ids[0], {Argmax(ref[t].data(), kV)}, true});
        for (int b = 1; b < B; ++b) in.push_back({ids[b], {(b * 31 + t) % kV}, true});
        if (t == 5) {
          late = *gpu->CreateSession();
          in.push_back({late, Tokens(77, kV, 900), true});
        }
        ASSERT_TRUE(gpu->Step(in, &l).ok());
        same += SameBits(Row(l, 0), ref[t + 1]);
      }
      std::printf("[batch-invariant %s B=%d] session 0 bit-identical in %d/25 steps\n", sparse ? "sparse" : "full", B,
                  same);
      EXPECT_EQ(same, 25) << (sparse ? "sparse" : "full") << " B=" << B;
      for (auto id : ids) ASSERT_TRUE(gpu->FreeSession(id).ok());
      ASSERT_TRUE(gpu->FreeSession(late).ok());
    }
  }
}

// A 700-token prompt (below the threshold of 1024: full attention throughout) cut into
// calls in four ways; the logits after the last call, the exported state and 8 decode
// steps after it are the same bits in all four. The second cut runs beside another
// session's prompt; the third ends on the decode path (a 1-token last call).
TEST(CudaBatchInvariant, PromptCutsGiveTheSameBits) {
  SKIP_WITHOUT_GPU();
  auto m = TestModel(false, 47);
  for (bool graphs : {true, false}) {
    auto gpu = Gpu(m, Invariant(graphs));
    ASSERT_NE(gpu, nullptr);
    const std::vector<int32_t> prompt = Tokens(700, kV, 9);
    auto piece = [&](int a, int b) { return std::vector<int32_t>(prompt.begin() + a, prompt.begin() + b); };
    std::vector<std::vector<int>> cuts = {{0, 700}, {0, 1, 300, 699, 700}, {0}, {}};
    for (int t = 1; t <= 37; ++t) cuts[2].push_back(t);  // token by token to 37, then 100s
    for (int t = 137; t < 700; t += 100) cuts[2].push_back(t);
    cuts[2].push_back(700);
    for (int t = 0; t <= 700; t += 100) cuts[3].push_back(t);
    std::vector<float> first_logits;
    std::string first_state;
    std::vector<std::vector<float>> first_decode;
    for (size_t c = 0; c < cuts.size(); ++c) {
      auto s = *gpu->CreateSession();
      SessionId other = 0;
      std::vector<float> l;
      for (size_t k = 0; k + 1 < cuts[c].size(); ++k) {
        std::vector<StepInput> in = {{s, piece(cuts[c][k], cuts[c][k + 1]), true}};
        if (c == 1 && k == 1) {
          other = *gpu->CreateSession();
          in.push_back({other, Tokens(250, kV, 3), true});
        }
        ASSERT_TRUE(gpu->Step(in, &l).ok());
      }
      const std::vector<float> logits = Row(l, 0);
      auto st = gpu->ExportSession(s);
      ASSERT_TRUE(st.ok()) << st.status();
      const std::string state = SerializeSnapshot(*m, *st);  // every float of the state, exactly
      std::vector<std::vector<float>> dec;
      int32_t tok = Argmax(logits.data(), kV);
      for (int t = 0; t < 8; ++t) {
        ASSERT_TRUE(gpu->Step({{s, {tok}, true}}, &l).ok());
        dec.push_back(l);
        tok = Argmax(l.data(), kV);
      }
      if (c == 0) {
        first_logits = logits;
        first_state = state;
        first_decode = dec;
      } else {
        EXPECT_TRUE(SameBits(logits, first_logits)) << "cut " << c << (graphs ? " graphs" : " eager");
        EXPECT_TRUE(state == first_state) << "cut " << c << (graphs ? " graphs" : " eager");
        int same = 0;
        for (int t = 0; t < 8; ++t) same += SameBits(dec[t], first_decode[t]);
        EXPECT_EQ(same, 8) << "cut " << c << (graphs ? " graphs" : " eager");
        std::printf("[split-invariant %s] cut %zu: logits %s, state %s, decode %d/8 identical\n",
                    graphs ? "graphs" : "eager", c, SameBits(logits, first_logits) ? "identical" : "DIFFERENT",
                    state == first_state ? "identical" : "DIFFERENT", same);
      }
      ASSERT_TRUE(gpu->FreeSession(s).ok());
      if (other) {
        ASSERT_TRUE(gpu->FreeSession(other).ok());
      }
    }
  }
}

// The mode's kernels against the CPU's fp32 reference: the same fp16 bound as the default
// kernels (cuda_parity_util.h), full and sparse paths, fp16 and bf16 weights.
TEST(CudaBatchInvariant, ParityWithCpu) {
  SKIP_WITHOUT_GPU();
  for (bool sparse : {false, true}) {
    CudaBackendOptions o = Invariant();
    RunParity(TestModel(sparse, 53), {Tokens(300, kV, 1), Tokens(1, kV, 2), Tokens(45, kV, 3)}, 40,
              sparse ? "batch-invariant sparse" : "batch-invariant full", false, o);
    o.bf16 = true;
    RunParity(TestModel(sparse, 59), {Tokens(120, kV, 4)}, 20,
              sparse ? "batch-invariant sparse bf16" : "batch-invariant full bf16", false, o, 1e-1);
  }
}

}  // namespace
}  // namespace rwkvx
