// WarmUp (engine/warmup.h): the throw-away steps leave nothing behind (every session freed,
// a later session's logits equal a fresh backend's), and a backend with room for only a
// few sessions is warmed with those. Against the fake backend with device sampling, the
// decode steps reach max_items sessions and sample through the spec.
#include <gtest/gtest.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/warmup.h"
#include "server/testing/fake_backend.h"

namespace rwkvx {
namespace {

std::shared_ptr<Model> TinyModel() {
  ModelShape s;
  s.vocab = 300; s.n_embd = 128; s.head_size = 64; s.n_head = 2;
  s.n_rwkv_layer = 2; s.n_attn_layer = 1; s.ffn_dim = 256;
  s.rank_w = 8; s.rank_a = 8; s.rank_v = 4; s.rank_g = 16;
  auto m = MakeRandomModel(s, 11, "warm");
  m->attn.chunk_size = 4;
  m->attn.topk = 2;
  return m;
}

std::vector<float> Logits(Backend& b) {
  auto id = b.CreateSession();
  EXPECT_TRUE(id.ok());
  std::vector<float> l;
  EXPECT_TRUE(b.Step({{*id, {5, 6, 7, 8, 9}, true}}, &l).ok());
  EXPECT_TRUE(b.Step({{*id, {10}, true}}, &l).ok());
  EXPECT_TRUE(b.FreeSession(*id).ok());
  return l;
}

TEST(WarmUp, LeavesNoTrace) {
  auto m = TinyModel();
  auto warm = MakeCpuBackend(m);
  auto fresh = MakeCpuBackend(m);
  const size_t used0 = warm->Memory().used_bytes;
  auto rep = WarmUp(*warm, 40, 6);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->sessions, 6);
  EXPECT_EQ(rep->steps, 1 + 4 + 1);  // prefill; decode 1, 2, 4, 6; logits rows
  EXPECT_EQ(warm->Memory().used_bytes, used0);
  EXPECT_EQ(Logits(*warm), Logits(*fresh));
}

TEST(WarmUp, SamplesOnTheDeviceAndStopsWhereSessionsRunOut) {
  auto b = std::make_unique<testing::FakeBackend>(300);
  b->device_sampling = true;
  b->max_sessions = 5;
  auto rep = WarmUp(*b, 64, 16);
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->sessions, 5);  // decode steps of 1, 2, 4, then the 5 that fit
  EXPECT_EQ(b->device_sampled.load(), 4 + 1 + 2 + 4 + 5);  // the prefill's 4 rows, then each decode row
  EXPECT_EQ(b->live.load(), 0);
}

}  // namespace
}  // namespace rwkvx
