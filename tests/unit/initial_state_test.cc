// InitialStateFromTensors / LoadInitialStateFile (engine/initial_state.h): the state-tuning
// layout is read into a session state, and every malformed file is refused by name.
// Numerical agreement with the official package is tests/parity/test_initial_state.py.
#include "engine/initial_state.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "engine/checkpoint/checkpoint.h"
#include "gtest/gtest.h"

namespace rwkvx {
namespace {

ModelShape Shape() {
  ModelShape s;
  s.vocab = 16;
  s.n_embd = 8;
  s.head_size = 4;
  s.n_head = 2;
  s.n_rwkv_layer = 3;
  s.n_attn_layer = 1;
  s.ffn_dim = 32;
  return s;
}

RawTensor F32(std::vector<int64_t> shape, float base) {
  RawTensor t;
  t.shape = std::move(shape);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * static_cast<float>(i);
  t.bytes.resize(v.size() * sizeof(float));
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

TensorMap Good(const char* prefix = "") {
  TensorMap m;
  for (int i = 0; i < 3; ++i)
    m[std::string(prefix) + "blocks." + std::to_string(i) + ".att.time_state"] = F32({2, 4, 4}, float(i));
  return m;
}

std::string Error(const TensorMap& m) {
  auto st = InitialStateFromTensors(m, Shape(), "f.pth");
  EXPECT_FALSE(st.ok());
  return std::string(st.status().message());
}

TEST(InitialState, ReadsEveryBlockIntoTheWkvStateAndZerosTheRest) {
  for (const char* prefix : {"", "rwkv."}) {
    auto st = InitialStateFromTensors(Good(prefix), Shape(), "f.pth");
    ASSERT_TRUE(st.ok()) << st.status();
    ASSERT_EQ(st->rwkv.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(st->rwkv[i].wkv.size(), 32u);
      EXPECT_FLOAT_EQ(st->rwkv[i].wkv[5], float(i) + 0.05f);
      for (float x : st->rwkv[i].att_prev) EXPECT_EQ(x, 0.f);
      for (float x : st->rwkv[i].ffn_prev) EXPECT_EQ(x, 0.f);
    }
    ASSERT_EQ(st->attn.size(), 1u);
    EXPECT_EQ(st->attn[0].ct, 0);
    EXPECT_EQ(st->tokens_seen, 0);
  }
}

TEST(InitialState, RefusesMalformedFilesNamingTheProblem) {
  TensorMap m = Good();
  m.erase("blocks.1.att.time_state");
  EXPECT_NE(Error(m).find("no blocks.1.att.time_state"), std::string::npos);

  m = Good();
  m["blocks.3.att.time_state"] = F32({2, 4, 4}, 0);
  EXPECT_NE(Error(m).find("the model has 3 RWKV blocks"), std::string::npos);

  m = Good();
  m["blocks.0.att.time_state"] = F32({2, 4, 5}, 0);
  EXPECT_NE(Error(m).find("has shape [2, 4, 5], the model needs [2, 4, 4]"), std::string::npos);

  m = Good();
  m["blocks.0.att.key.weight"] = F32({8, 8}, 0);  // a full checkpoint is not a state file
  EXPECT_NE(Error(m).find("is not an initial-state tensor"), std::string::npos);

  m = Good();
  m["rwkv.blocks.2.att.time_state"] = F32({2, 4, 4}, 0);  // block 2 twice
  EXPECT_NE(Error(m).find("two time_state tensors"), std::string::npos);

  m = Good();
  RawTensor& t = m["blocks.2.att.time_state"];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(t.bytes.data() + 8, &nan, sizeof(float));
  EXPECT_NE(Error(m).find("non-finite"), std::string::npos);
}

TEST(InitialState, LoadsASafetensorsFileAndNamesAMissingOne) {
  const std::string path = ::testing::TempDir() + "/initial_state_test.safetensors";
  ASSERT_TRUE(WriteSafetensorsFile(path, Good()).ok());
  auto st = LoadInitialStateFile(path, Shape());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_FLOAT_EQ(st->rwkv[2].wkv[0], 2.f);
  std::remove(path.c_str());
  auto missing = LoadInitialStateFile(path, Shape());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("initial_state_test.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace rwkvx
