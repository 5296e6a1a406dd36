// GPU sampling (kernels/sample.cuh) against the host Sampler (engine/sampler.h): the same
// adjusted logits and draw must give the same token, on realistic vocabularies and on the
// edge cases (ties at the maximum and at the k-th value, NaN, +inf, everything banned).
// Then the backend path: CudaBackend::StepSampled against Step + the host sampler.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/sampler.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/sample.cuh"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Case {
  std::vector<float> logits;
  SamplingParams p;
  std::vector<std::pair<int32_t, float>> adjust;
  double u = 0;
};

// Host reference: the adjustments as a backend applies them, then Sampler::SampleAdjusted.
SampleResult HostSample(Case c) {
  ApplyDeviceAdjustments(c.adjust, c.logits.data(), static_cast<int>(c.logits.size()));
  Sampler s(c.p, nullptr);
  return s.SampleAdjusted(c.logits.data(), static_cast<int>(c.logits.size()), c.u);
}

std::vector<Case> MakeCases(int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  std::vector<Case> cs;
  const float temps[] = {0.f, 1.f, 0.7f, 1.5f};
  const float top_ps[] = {1.f, 0.9f, 0.3f, 0.999f};
  const int top_ks[] = {0, 1, 40, 1000};
  for (int i = 0; i < 64; ++i) {
    Case c;
    c.logits.resize(V);
    for (float& x : c.logits) x = nd(g);
    if (i % 8 == 5)  // integer logits: many ties at the top-k and top-p boundaries
      for (float& x : c.logits) x = std::round(x);
    if (i % 16 == 7) {  // ties at the maximum: the lowest id wins greedy
      c.logits[V / 2] = 40.f;
      c.logits[V / 3] = 40.f;
      c.logits[V - 1] = 40.f;
    }
    c.p.temperature = temps[i % 4];
    c.p.top_p = top_ps[(i / 4) % 4];
    c.p.top_k = top_ks[(i / 16) % 4];
    c.u = ud(g);
    // Penalties on some tokens, bans on others (each token once).
    for (int t = 0; t < 60; ++t) {
      const int32_t tok = (t * 977 + i * 131) % V;
      bool dup = false;
      for (const auto& a : c.adjust) dup |= a.first == tok;
      if (!dup) c.adjust.emplace_back(tok, t % 5 == 0 ? kInf : 0.1f * (t % 7));
    }
    cs.push_back(std::move(c));
  }
  // Non-finite logits: NaN never wins; +inf tokens share everything.
  Case nan_case = cs[1];
  for (int t = 0; t < V; t += 3) nan_case.logits[t] = std::numeric_limits<float>::quiet_NaN();
  cs.push_back(nan_case);
  Case inf_case = cs[2];
  inf_case.logits[11] = kInf;
  inf_case.logits[V - 5] = kInf;
  inf_case.adjust.clear();
  cs.push_back(inf_case);
  Case banned = cs[3];  // everything banned: token 0, log-probability -inf
  banned.adjust.clear();
  for (int t = 0; t < V; ++t) banned.adjust.emplace_back(t, kInf);
  cs.push_back(banned);
  return cs;
}

void CheckKernel(int V, uint32_t seed) {
  const std::vector<Case> cs = MakeCases(V, seed);
  const int n = static_cast<int>(cs.size());
  std::vector<float> logits;
  std::vector<kernels::SampleItem> items(n);
  std::vector<int> adj_tok;
  std::vector<float> adj_val;
  for (int i = 0; i < n; ++i) {
    logits.insert(logits.end(), cs[i].logits.begin(), cs[i].logits.end());
    items[i].row = i;
    items[i].temperature = cs[i].p.temperature;
    items[i].top_p = cs[i].p.top_p;
    items[i].top_k = cs[i].p.top_k;
    items[i].uniform = cs[i].u;
    items[i].adj0 = static_cast<int>(adj_tok.size());
    items[i].nadj = static_cast<int>(cs[i].adjust.size());
    for (const auto& [t, v] : cs[i].adjust) {
      adj_tok.push_back(t);
      adj_val.push_back(v);
    }
  }
  float *d_logits, *d_val, *d_lp;
  int *d_tok, *d_out;
  kernels::SampleItem* d_items;
  ASSERT_EQ(cudaMalloc(&d_logits, logits.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_items, n * sizeof(kernels::SampleItem)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_tok, adj_tok.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_val, adj_val.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_lp, n * 4), cudaSuccess);
  cudaMemcpy(d_logits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_items, items.data(), n * sizeof(kernels::SampleItem), cudaMemcpyHostToDevice);
  cudaMemcpy(d_tok, adj_tok.data(), adj_tok.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_val, adj_val.data(), adj_val.size() * 4, cudaMemcpyHostToDevice);
  cudaMemset(d_out, 0xff, n * 4);  // poisoned
  kernels::SampleParams sp;
  sp.logits = d_logits;
  sp.items = d_items;
  sp.adj_tok = d_tok;
  sp.adj_val = d_val;
  sp.n = n;
  sp.V = V;
  sp.out_token = d_out;
  sp.out_logprob = d_lp;
  ASSERT_EQ(kernels::LaunchSample(sp, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<int> tok(n);
  std::vector<float> lp(n);
  cudaMemcpy(tok.data(), d_out, n * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(lp.data(), d_lp, n * 4, cudaMemcpyDeviceToHost);
  int sampled_not_greedy = 0;
  for (int i = 0; i < n; ++i) {
    const SampleResult want = HostSample(cs[i]);
    EXPECT_EQ(tok[i], want.token) << "case " << i << " T=" << cs[i].p.temperature << " top_p=" << cs[i].p.top_p
                                  << " top_k=" << cs[i].p.top_k << " u=" << cs[i].u;
    if (std::isinf(want.logprob))
      EXPECT_EQ(lp[i], want.logprob) << "case " << i;
    else
      EXPECT_NEAR(lp[i], want.logprob, 1e-4f * std::max(1.f, std::fabs(want.logprob))) << "case " << i;
    Case g = cs[i];
    g.p.temperature = 0;
    sampled_not_greedy += want.token != HostSample(g).token;
  }
  EXPECT_GT(sampled_not_greedy, 10);  // the cases really draw
  cudaFree(d_logits);
  cudaFree(d_items);
  cudaFree(d_tok);
  cudaFree(d_val);
  cudaFree(d_out);
  cudaFree(d_lp);
}

TEST(CudaSample, MatchesHostSamplerWorldVocab) {
  SKIP_WITHOUT_GPU();
  CheckKernel(65536, 1);
}

TEST(CudaSample, MatchesHostSamplerOddVocab) {
  SKIP_WITHOUT_GPU();
  CheckKernel(1000, 2);  // fewer tokens than threads, not a multiple of anything
  CheckKernel(70001, 3);
}

// StepSampled: sampled rows never come back as logits; host rows come back in item order;
// the drawn tokens are the host sampler's on the same logits.
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
      specs[i].temperature = i % 3 == 0 ? 0.f : 0.8f;
      specs[i].top_p = i % 2 ? 0.9f : 1.f;
      specs[i].top_k = i == 4 ? 10 : 0;
      specs[i].uniform = std::uniform_real_distribution<double>(0, 1)(g);
      specs[i].adjust = {{static_cast<int32_t>(i), kInf}, {static_cast<int32_t>(100 + i), 0.5f}};
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
      Case c;
      c.logits.assign(row, row + V);
      c.p.temperature = specs[i].temperature;
      c.p.top_p = specs[i].top_p;
      c.p.top_k = specs[i].top_k;
      c.adjust = specs[i].adjust;
      c.u = specs[i].uniform;
      const SampleResult want = HostSample(c);
      EXPECT_EQ(st[d].token, want.token) << "step " << step << " item " << i;
      EXPECT_NEAR(st[d].logprob, want.logprob, 1e-4f * std::max(1.f, std::fabs(want.logprob)));
      ++d;
    }
  }
  // Through plain Step, a sample request is refused rather than ignored.
  std::vector<StepInput> bad(1);
  bad[0].session = sb[0];
  bad[0].tokens = {1};
  bad[0].sample = &specs[0];
  std::vector<float> l;
  EXPECT_FALSE((*b)->Step(bad, &l).ok());
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
