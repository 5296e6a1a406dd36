// The backend's sampling path (CudaBackend::StepSampled): its tokens against Step plus the
// host Sampler, its refusals, and the same bits with and without programmatic dependent
// launch. The kernels alone: sample_test.cc. Built only with CUDA; skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_runtime.h>

#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/sample_test_util.h"

namespace rwkvx {
namespace {

// StepSampled: sampled rows never come back as logits; host rows come back in item order;
// the drawn tokens are the host sampler's on the same logits, for single tokens and for
// the last row of multi-token items (prompt ends) alike.
TEST(CudaSample, StepSampledMatchesStepPlusHostSampler) {
  SKIP_WITHOUT_GPU();
  const int V = 4096;
  auto model = MakeRandomModel(Shape(128, 2, 1, V), 5, "t");
  CudaBackendOptions o;
  o.gpu_memory_fraction = 0.2;
  auto a = MakeCudaBackend(model, o);
  auto b = MakeCudaBackend(model, o);
  ASSERT_TRUE(a.ok() && b.ok());
  const int n = 6;
  std::vector<SessionId> sa, sb;
  for (int i = 0; i < n; ++i) {
    sa.push_back(*(*a)->CreateSession());
    sb.push_back(*(*b)->CreateSession());
  }
  std::mt19937 g(9);
  std::vector<DeviceSampling> specs(n);
  for (int step = 0; step < 8; ++step) {
    std::vector<StepInput> ia(n), ib(n);
    for (int i = 0; i < n; ++i) {
      ia[i].session = sa[i];
      ib[i].session = sb[i];
      ia[i].tokens = ib[i].tokens = {static_cast<int32_t>((step * 31 + i * 7) % V)};
      // Prompt ends (the server draws a prompt's first token here too): step 0 all items,
      // step 4 a mixed step with three multi-token items beside single tokens.
      if (step == 0 || (step == 4 && i < 3))
        for (int t = 0; t < 2 + 5 * i; ++t) ia[i].tokens.push_back(static_cast<int32_t>((t * 13 + i) % V));
      ib[i].tokens = ia[i].tokens;
      specs[i].temperature = i % 3 == 0 ? 0.f : 0.8f;
      specs[i].top_p = i % 2 ? 0.9f : 1.f;
      specs[i].top_k = i == 4 ? 10 : 0;
      specs[i].uniform = std::uniform_real_distribution<double>(0, 1)(g);
      specs[i].adjust = {{static_cast<int32_t>(i), kInf}, {static_cast<int32_t>(100 + i), 0.5f}};
      specs[i].allowed.clear();
      if (i == 3 || i == 5) {  // a grammar mask: every 7th token of the first 3000 (item 3) or 40 words
        specs[i].allowed.assign(i == 3 ? V / 32 : 40, 0u);
        for (int t = step % 7; t < 3000 && t / 32 < static_cast<int>(specs[i].allowed.size()); t += 7)
          specs[i].allowed[t / 32] |= 1u << (t % 32);
      }
      if (i % 2 == 1) ib[i].sample = &specs[i];  // odd items sampled on the GPU
    }
    std::vector<float> la, lb;
    std::vector<SampledToken> st;
    ASSERT_TRUE((*a)->Step(ia, &la).ok());
    ASSERT_TRUE((*b)->StepSampled(ib, &lb, &st).ok());
    ASSERT_EQ(la.size(), static_cast<size_t>(n) * V);
    ASSERT_EQ(lb.size(), static_cast<size_t>(n / 2) * V);
    ASSERT_EQ(st.size(), static_cast<size_t>(n / 2));
    for (int i = 0, h = 0, d = 0; i < n; ++i) {
      const float* row = la.data() + static_cast<size_t>(i) * V;
      if (!ib[i].sample) {  // the same logits row (same backend code, same inputs)
        for (int v = 0; v < V; ++v) ASSERT_EQ(lb[static_cast<size_t>(h) * V + v], row[v]);
        ++h;
        continue;
      }
      SampleCase c;
      c.logits.assign(row, row + V);
      c.p.temperature = specs[i].temperature;
      c.p.top_p = specs[i].top_p;
      c.p.top_k = specs[i].top_k;
      c.adjust = specs[i].adjust;
      c.allowed = specs[i].allowed;
      c.u = specs[i].uniform;
      const SampleResult want = HostSample(c);
      EXPECT_EQ(st[d].token, want.token) << "step " << step << " item " << i;
      EXPECT_NEAR(st[d].logprob, want.logprob, 1e-4f * std::max(1.f, std::fabs(want.logprob)));
      ++d;
    }
  }
  // A mask longer than the vocabulary is refused.
  {
    DeviceSampling longmask = specs[1];
    longmask.allowed.assign(V / 32 + 1, ~0u);
    std::vector<StepInput> in(1);
    in[0].session = sb[1];
    in[0].tokens = {1};
    in[0].sample = &longmask;
    std::vector<float> l;
    std::vector<SampledToken> st;
    EXPECT_FALSE((*b)->StepSampled(in, &l, &st).ok());
  }
  // Through plain Step, a sample request is refused rather than ignored.
  std::vector<StepInput> bad(1);
  bad[0].session = sb[0];
  bad[0].tokens = {1};
  bad[0].sample = &specs[0];
  std::vector<float> l;
  EXPECT_FALSE((*b)->Step(bad, &l).ok());
}

// The sampler's passes take programmatic dependent launch in steps of few sessions (the
// backend's PDL steps, CudaBackendOptions::pdl): each pass waits for the one before it, so
// the tokens and log-probability bits are those of ordinary launches. Steps of 3 sessions
// (PDL on where the GPU has it), top-k, top-p, greedy and a plain draw, graphs and eager.
TEST(CudaSample, PdlSampledStepsEqualPlainOnes) {
  SKIP_WITHOUT_GPU();
  const int V = 4096, n = 3;
  auto model = MakeRandomModel(Shape(128, 2, 1, V), 8, "t");
  auto run = [&](bool pdl, bool graphs) {
    CudaBackendOptions o;
    o.gpu_memory_fraction = 0.2;
    o.pdl = pdl;
    o.cuda_graphs = graphs;
    auto b = MakeCudaBackend(model, o);
    std::vector<SampledToken> all;
    if (!b.ok()) return all;
    std::vector<SessionId> ids;
    for (int i = 0; i < n; ++i) ids.push_back(*(*b)->CreateSession());
    std::mt19937 g(17);
    std::vector<DeviceSampling> specs(n);
    std::vector<int32_t> tok = {5, 6, 7};
    for (int step = 0; step < 10; ++step) {
      std::vector<StepInput> in(n);
      for (int i = 0; i < n; ++i) {
        in[i].session = ids[i];
        in[i].tokens = {tok[i]};
        if (step == 0)
          for (int t = 0; t < 9 + 4 * i; ++t) in[i].tokens.push_back(static_cast<int32_t>((t * 29 + i) % V));
        specs[i].temperature = (step + i) % 4 == 0 ? 0.f : 0.9f;
        specs[i].top_p = i == 1 ? 0.8f : 1.f;
        specs[i].top_k = i == 2 ? 40 : 0;
        specs[i].uniform = std::uniform_real_distribution<double>(0, 1)(g);
        in[i].sample = &specs[i];
      }
      std::vector<float> l;
      std::vector<SampledToken> st;
      EXPECT_TRUE((*b)->StepSampled(in, &l, &st).ok());
      EXPECT_EQ(st.size(), static_cast<size_t>(n));
      for (size_t i = 0; i < st.size() && i < tok.size(); ++i) tok[i] = st[i].token;
      all.insert(all.end(), st.begin(), st.end());
    }
    return all;
  };
  for (bool graphs : {true, false}) {
    const std::vector<SampledToken> with = run(true, graphs), without = run(false, graphs);
    ASSERT_EQ(with.size(), static_cast<size_t>(10 * n));
    ASSERT_EQ(with.size(), without.size());
    for (size_t k = 0; k < with.size(); ++k) {
      EXPECT_EQ(with[k].token, without[k].token) << (graphs ? "graphs" : "eager") << " draw " << k;
      EXPECT_EQ(std::memcmp(&with[k].logprob, &without[k].logprob, 4), 0) << (graphs ? "graphs" : "eager") << " draw " << k;
    }
  }
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
