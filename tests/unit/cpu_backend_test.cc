// CPU backend: batching, snapshots, errors, model building. Parity with the official
// package lives in tests/parity (Python).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/backend.h"
#include "engine/model.h"

namespace rwkvx {
namespace {

ModelShape SmallShape(int R = 3, int M = 2) {
  ModelShape s;
  s.vocab = 300; s.n_embd = 128; s.head_size = 64; s.n_head = 2;
  s.n_rwkv_layer = R; s.n_attn_layer = M; s.ffn_dim = 256;
  s.rank_w = 8; s.rank_a = 8; s.rank_v = 4; s.rank_g = 16;
  return s;
}

std::shared_ptr<Model> SmallModel(int chunk = 4, int topk = 2, int max_kv = 0) {
  auto m = MakeRandomModel(SmallShape(), 7, "test");
  m->attn.chunk_size = chunk;
  m->attn.topk = topk;
  m->attn.max_kv_cache_size = max_kv;
  m->attn.kv_cache_window_size = 3;
  m->attn.min_kv_cache_size = 10;
  return m;
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (seed * 131 + i * 17) % 300;
  return t;
}

double MaxRelDiff(const float* a, const float* b, int n) {
  double mx = 0, scale = 0;
  for (int i = 0; i < n; ++i) {
    mx = std::max(mx, (double)std::fabs(a[i] - b[i]));
    scale = std::max(scale, (double)std::fabs(a[i]));
  }
  return mx / scale;
}

int Argmax(const float* a, int n) { return std::max_element(a, a + n) - a; }

TEST(CpuBackend, BatchedStepIsBitIdenticalToSessionsAlone) {
  // Four sessions with different histories; one step mixes prefills and decodes.
  auto model = SmallModel(4, 2, 16);
  auto alone = MakeCpuBackend(model);
  auto batched = MakeCpuBackend(model);
  const int V = model->shape.vocab;
  std::vector<SessionId> a, b;
  for (int s = 0; s < 4; ++s) {
    a.push_back(*alone->CreateSession());
    b.push_back(*batched->CreateSession());
  }
  std::vector<float> la, lb;
  for (int round = 0; round < 6; ++round) {
    std::vector<StepInput> items;
    for (int s = 0; s < 4; ++s) {
      const int T = (s + round) % 3 == 0 ? 5 + s : 1;  // some prefill, some decode
      items.push_back({b[s], Tokens(T, s * 10 + round), true});
    }
    ASSERT_TRUE(batched->Step(items, &lb).ok());
    ASSERT_EQ(lb.size(), 4u * V);
    for (int s = 0; s < 4; ++s) {
      ASSERT_TRUE(alone->Step({{a[s], items[s].tokens, true}}, &la).ok());
      // Batch invariance is exact by construction (engine/cpu/linear.cc).
      EXPECT_EQ(MaxRelDiff(la.data(), lb.data() + s * V, V), 0.0) << "round " << round << " session " << s;
      EXPECT_EQ(Argmax(la.data(), V), Argmax(lb.data() + s * V, V));
    }
  }
  for (int s = 0; s < 4; ++s) EXPECT_EQ(alone->SessionKvTokens(a[s]), batched->SessionKvTokens(b[s]));
}

TEST(CpuBackend, ExportImportContinuesIdentically) {
  auto model = SmallModel(4, 2, 16);
  auto be = MakeCpuBackend(model);
  auto s1 = *be->CreateSession();
  std::vector<float> l1, l2;
  ASSERT_TRUE(be->Step({{s1, Tokens(20, 1), true}}, &l1).ok());  // past threshold and compression
  auto snap = be->ExportSession(s1);
  ASSERT_TRUE(snap.ok());
  auto s2 = be->ImportSession(*snap);
  ASSERT_TRUE(s2.ok());
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(be->Step({{s1, {i + 3}, true}}, &l1).ok());
    ASSERT_TRUE(be->Step({{*s2, {i + 3}, true}}, &l2).ok());
    ASSERT_EQ(l1, l2) << "step " << i;
  }
}

TEST(CpuBackend, CompressionBoundsTheCache) {
  auto model = SmallModel(4, 2, 16);  // compress above 16 rows to 10 (window 3)
  auto be = MakeCpuBackend(model);
  auto s = *be->CreateSession();
  std::vector<float> l;
  size_t max_seen = 0;
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(be->Step({{s, {i % 300}, true}}, &l).ok());
    max_seen = std::max(max_seen, be->SessionKvTokens(s));
    // The admission bound holds for the paged store (whole pages).
    ASSERT_LE(be->SessionBytes(s), be->MaxSessionBytes()) << "step " << i;
  }
  // Two sparse blocks, each at most max_kv + 1 rows.
  EXPECT_LE(max_seen, 2u * 17);
  EXPECT_GT(max_seen, 0u);
}

TEST(CpuBackend, BadStepsAreErrorsNotCrashes) {
  auto model = SmallModel();
  auto be = MakeCpuBackend(model);
  std::vector<float> l;
  EXPECT_EQ(be->Step({{12345, {1}, true}}, &l).code(), absl::StatusCode::kNotFound);
  auto s = *be->CreateSession();
  EXPECT_EQ(be->Step({{s, {}, true}}, &l).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be->Step({{s, {300}, true}}, &l).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be->Step({{s, {-1}, true}}, &l).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be->Step({{s, {1}, true}, {s, {2}, true}}, &l).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(be->FreeSession(s).ok());
  EXPECT_EQ(be->FreeSession(s).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(be->Memory().used_bytes, 0u);
}

TEST(CpuBackend, WantLogitsFalseSkipsTheHead) {
  auto model = SmallModel();
  auto be = MakeCpuBackend(model);
  auto s1 = *be->CreateSession(), s2 = *be->CreateSession();
  std::vector<float> l;
  ASSERT_TRUE(be->Step({{s1, {1, 2, 3}, false}, {s2, {4}, true}}, &l).ok());
  EXPECT_EQ(l.size(), (size_t)model->shape.vocab);
}

TEST(CpuBackend, HalfWeightsStayCloseAndBatchInvariant) {
  auto model = SmallModel(4, 2, 0);
  auto f32 = MakeCpuBackend(model);
  CpuBackendOptions ho;
  ho.half_weights = true;
  auto f16 = MakeCpuBackend(model, ho);
  auto a = *f32->CreateSession();
  auto b = *f16->CreateSession(), c = *f16->CreateSession();
  std::vector<float> la, lb, lc;
  ASSERT_TRUE(f32->Step({{a, Tokens(12, 2), true}}, &la).ok());
  ASSERT_TRUE(f16->Step({{b, Tokens(12, 2), true}, {c, Tokens(7, 3), true}}, &lb).ok());
  const int V = model->shape.vocab;
  // fp16 weights carry ~2^-11 relative rounding per weight; logits stay within 1%.
  const double d = MaxRelDiff(la.data(), lb.data(), V);
  EXPECT_GT(d, 0.0);
  EXPECT_LT(d, 1e-2);
  auto alone = *f16->CreateSession();
  ASSERT_TRUE(f16->Step({{alone, Tokens(12, 2), true}}, &lc).ok());
  EXPECT_EQ(MaxRelDiff(lc.data(), lb.data(), V), 0.0);
}

TEST(Model, RandomModelIsDeterministic) {
  auto a = MakeRandomModel(SmallShape(), 42, "a");
  auto b = MakeRandomModel(SmallShape(), 42, "b");
  auto c = MakeRandomModel(SmallShape(), 43, "c");
  EXPECT_EQ(a->head, b->head);
  EXPECT_EQ(a->rwkv[1].Wk, b->rwkv[1].Wk);
  EXPECT_NE(a->head, c->head);
}

TEST(Model, BuildFromTensorsInfersShapeAndRejectsBadTensors) {
  auto src = MakeRandomModel(SmallShape(5, 2), 3, "src");
  TensorMap t = ModelToTensors(*src);
  auto m = BuildModel(t, "x");
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelShape& s = (*m)->shape;
  EXPECT_EQ(s.vocab, 300); EXPECT_EQ(s.n_embd, 128); EXPECT_EQ(s.n_head, 2);
  EXPECT_EQ(s.n_rwkv_layer, 5); EXPECT_EQ(s.n_attn_layer, 2); EXPECT_EQ(s.ffn_dim, 256);
  EXPECT_EQ(s.rank_w, 8); EXPECT_EQ(s.rank_v, 4); EXPECT_EQ(s.rank_g, 16);
  EXPECT_EQ((*m)->warnings.size(), 1u);  // 5 mod 2 != 0
  EXPECT_EQ((*m)->order, (std::vector<int>{0, 1, -1, 2, 3, -2}));

  TensorMap missing = t;
  missing.erase("rwkv.blocks.2.att.k_a");
  auto e1 = BuildModel(missing, "x");
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.status().message().find("rwkv.blocks.2.att.k_a"), std::string::npos) << e1.status();

  TensorMap bad = t;
  bad["moba.1.att.key.weight"].shape = {64, 256};
  auto e2 = BuildModel(bad, "x");
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.status().message().find("moba.1.att.key.weight"), std::string::npos) << e2.status();

  // Plain RWKV-7 layout: no prefix, no sparse blocks.
  TensorMap plain;
  for (auto& [k, v] : t)
    if (k.rfind("rwkv.", 0) == 0) plain[k.substr(5)] = v;
  auto p = BuildModel(plain, "plain");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->shape.n_attn_layer, 0);
  EXPECT_EQ((*p)->order.size(), 5u);
}

TEST(Model, SparseConfigJson) {
  SparseAttnConfig c;
  EXPECT_TRUE(ApplySparseAttnJson(R"({"moba_chunk_size": 512, "topk": 4, "attn_mode": "full",
                                     "max_kv_cache_size": 0})", &c).ok());
  EXPECT_EQ(c.chunk_size, 512);
  EXPECT_EQ(c.topk, 4);
  EXPECT_EQ(c.Threshold(), 2048);
  EXPECT_EQ(c.decode_mode, AttnDecodeMode::kFull);
  EXPECT_FALSE(ApplySparseAttnJson(R"({"chunk": 5})", &c).ok());
  EXPECT_FALSE(ApplySparseAttnJson(R"({"topk": "3"})", &c).ok());
  EXPECT_FALSE(ApplySparseAttnJson(R"([1,2])", &c).ok());
  EXPECT_FALSE(ApplySparseAttnJson(R"({"max_kv_cache_size": 100, "kv_cache_window_size": 50, "min_kv_cache_size": 40})", &c).ok());
  EXPECT_FALSE(ApplySparseAttnJson("{not json", &c).ok());
  SparseAttnConfig d;
  EXPECT_EQ(d.context_length, 0);  // none declared
  EXPECT_TRUE(ApplySparseAttnJson(R"({"ctx_len": 65536})", &d).ok());
  EXPECT_EQ(d.context_length, 65536);
  EXPECT_FALSE(ApplySparseAttnJson(R"({"context_length": -1})", &d).ok());
}

}  // namespace
}  // namespace rwkvx
