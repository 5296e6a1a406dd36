// GPU sampling (kernels/sample.cuh) against the host Sampler (engine/sampling/sampler.h): the same
// adjusted logits and draw must give the same token, on realistic vocabularies and on the
// edge cases (ties at the maximum and at the k-th value, NaN, +inf, everything banned).
// Rows are split over several blocks at small batch: the same results at B = 1 and B = 300,
// run after run. The backend path (CudaBackend::StepSampled) is in sample_step_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/sampling/sampler.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/sample.cuh"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/sample_test_util.h"

namespace rwkvx {
namespace {

std::vector<SampleCase> MakeCases(int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  std::vector<SampleCase> cs;
  const float temps[] = {0.f, 1.f, 0.7f, 1.5f};
  const float top_ps[] = {1.f, 0.9f, 0.3f, 0.999f};
  const int top_ks[] = {0, 1, 40, 1000};
  for (int i = 0; i < 64; ++i) {
    SampleCase c;
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
  SampleCase nan_case = cs[1];
  for (int t = 0; t < V; t += 3) nan_case.logits[t] = std::numeric_limits<float>::quiet_NaN();
  cs.push_back(nan_case);
  SampleCase inf_case = cs[2];
  inf_case.logits[11] = kInf;
  inf_case.logits[V - 5] = kInf;
  inf_case.adjust.clear();
  cs.push_back(inf_case);
  SampleCase banned = cs[3];  // everything banned: token 0, log-probability -inf
  banned.adjust.clear();
  for (int t = 0; t < V; ++t) banned.adjust.emplace_back(t, kInf);
  cs.push_back(banned);
  return cs;
}

// Device buffer freed on scope exit.
struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes) { EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(bytes, 16)), cudaSuccess); }
  ~DevBuf() { cudaFree(p); }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

struct DevResult {
  std::vector<int> token;
  std::vector<float> logprob;
};

// Runs the kernels on the rows of `cs` as one batch (the batch size sets the split of each
// row over blocks unless `splits` forces one). `all_passes` false: only the passes
// SamplePasses asks for.
DevResult RunKernel(const std::vector<SampleCase>& cs, bool all_passes = true, int splits = 0) {
  const int n = static_cast<int>(cs.size());
  const int V = static_cast<int>(cs[0].logits.size());
  std::vector<kernels::SampleItem> items(n);
  std::vector<int> adj_tok;
  std::vector<float> adj_val;
  std::vector<uint32_t> mask;
  for (int i = 0; i < n; ++i) {
    if (!cs[i].allowed.empty()) {
      items[i].mask0 = static_cast<int>(mask.size());
      items[i].nmask = static_cast<int>(cs[i].allowed.size());
      mask.insert(mask.end(), cs[i].allowed.begin(), cs[i].allowed.end());
    }
    items[i].row = n - 1 - i;  // rows out of item order
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
  std::vector<float> rows(static_cast<size_t>(n) * V);  // item i's logits in row n - 1 - i
  for (int i = 0; i < n; ++i)
    std::copy(cs[i].logits.begin(), cs[i].logits.end(), rows.begin() + static_cast<size_t>(n - 1 - i) * V);
  DevBuf d_logits(rows.size() * 4), d_items(n * sizeof(kernels::SampleItem)), d_tok(adj_tok.size() * 4),
      d_val(adj_val.size() * 4), d_mask(mask.size() * 4), d_out(n * 4), d_lp(n * 4), d_scratch(kernels::SampleScratchBytes(n, V, splits));
  cudaMemcpy(d_logits.p, rows.data(), rows.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_items.p, items.data(), n * sizeof(kernels::SampleItem), cudaMemcpyHostToDevice);
  cudaMemcpy(d_tok.p, adj_tok.data(), adj_tok.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_val.p, adj_val.data(), adj_val.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d_mask.p, mask.data(), mask.size() * 4, cudaMemcpyHostToDevice);
  cudaMemset(d_out.p, 0xff, n * 4);  // poisoned
  cudaMemset(d_lp.p, 0xff, n * 4);
  cudaMemset(d_scratch.p, 0xff, kernels::SampleScratchBytes(n, V, splits));  // the kernels must not rely on zeros
  kernels::SampleParams sp;
  sp.logits = d_logits.as<float>();
  sp.items = d_items.as<kernels::SampleItem>();
  sp.adj_tok = d_tok.as<int>();
  sp.adj_val = d_val.as<float>();
  sp.mask = mask.empty() ? nullptr : d_mask.as<unsigned>();
  sp.n = n;
  sp.V = V;
  sp.out_token = d_out.as<int>();
  sp.out_logprob = d_lp.as<float>();
  sp.scratch = d_scratch.p;
  sp.splits = splits;
  if (!all_passes) sp.passes = kernels::SamplePasses(items.data(), n, V);
  EXPECT_EQ(kernels::LaunchSample(sp, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  DevResult r;
  r.token.resize(n);
  r.logprob.resize(n);
  cudaMemcpy(r.token.data(), d_out.p, n * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(r.logprob.data(), d_lp.p, n * 4, cudaMemcpyDeviceToHost);
  return r;
}

// The device's choices equal the host sampler's; returns how many rows drew a token other
// than the greedy one.
int ExpectMatchesHost(const std::vector<SampleCase>& cs, const DevResult& d, const std::string& what) {
  int sampled_not_greedy = 0;
  for (size_t i = 0; i < cs.size(); ++i) {
    const SampleResult want = HostSample(cs[i]);
    EXPECT_EQ(d.token[i], want.token) << what << " case " << i << " T=" << cs[i].p.temperature
                                      << " top_p=" << cs[i].p.top_p << " top_k=" << cs[i].p.top_k << " u=" << cs[i].u;
    if (std::isinf(want.logprob))
      EXPECT_EQ(d.logprob[i], want.logprob) << what << " case " << i;
    else
      EXPECT_NEAR(d.logprob[i], want.logprob, 1e-4f * std::max(1.f, std::fabs(want.logprob))) << what << " case " << i;
    SampleCase g = cs[i];
    g.p.temperature = 0;
    sampled_not_greedy += want.token != HostSample(g).token;
  }
  return sampled_not_greedy;
}

// Same token and the same log-probability bits.
void ExpectSameBits(const DevResult& a, size_t ia, const DevResult& b, size_t ib, const std::string& what) {
  EXPECT_EQ(a.token[ia], b.token[ib]) << what;
  EXPECT_EQ(std::memcmp(&a.logprob[ia], &b.logprob[ib], 4), 0) << what << ": " << a.logprob[ia] << " vs " << b.logprob[ib];
}

void CheckKernel(int V, uint32_t seed) {
  const std::vector<SampleCase> cs = MakeCases(V, seed);
  EXPECT_GT(ExpectMatchesHost(cs, RunKernel(cs), "V=" + std::to_string(V)), 10);  // the cases really draw
}

TEST(CudaSample, MatchesHostSamplerWorldVocab) {
  SKIP_WITHOUT_GPU();
  CheckKernel(65536, 1);
}

TEST(CudaSample, MatchesHostSamplerOddVocab) {
  SKIP_WITHOUT_GPU();
  CheckKernel(1000, 2);  // fewer tokens than one block's chunk, not a multiple of anything
  CheckKernel(70001, 3);
}

// Each row alone (B = 1: split over the most blocks), then all rows twice over in one
// batch of 300 (few blocks per row): the host's choices every time, and the same bits at
// every batch size and on every run (integer sums, fixed merge order), with only the
// passes the rows need or with all of them.
TEST(CudaSample, SplitRowsAtBatch1And300AreDeterministic) {
  SKIP_WITHOUT_GPU();
  for (int V : {65536, 1000, 70001}) {
    const std::string v = "V=" + std::to_string(V);
    const std::vector<SampleCase> cs = MakeCases(V, 10 + V % 7);
    std::vector<SampleCase> big;
    for (int i = 0; i < 300; ++i) big.push_back(cs[i % cs.size()]);
    const DevResult b300 = RunKernel(big);
    ExpectMatchesHost(big, b300, v + " B=300");
    const DevResult again = RunKernel(big, /*all_passes=*/false);
    for (size_t i = 0; i < big.size(); ++i) ExpectSameBits(b300, i, again, i, v + " B=300 twice, row " + std::to_string(i));
    for (size_t i = 0; i < cs.size(); ++i) {
      const std::vector<SampleCase> one = {cs[i]};
      const DevResult b1 = RunKernel(one, /*all_passes=*/false);
      ExpectMatchesHost(one, b1, v + " B=1 case " + std::to_string(i));
      ExpectSameBits(b1, 0, b300, i, v + " B=1 vs B=300, case " + std::to_string(i));
      ExpectSameBits(b1, 0, b300, i + cs.size(), v + " B=1 vs B=300 (second copy), case " + std::to_string(i));
    }
  }
}

// The split changes no bit: every case in one batch split 1, 2, 3, 7 and 32 ways (chunks
// of 65536 down to 2048 ids; 1000 ids: one), the host's choices and the same bits; and
// the chosen split stays in its bounds: all 32 for one row, fewer for 1024 rows.
TEST(CudaSample, AnySplitGivesTheSameBits) {
  SKIP_WITHOUT_GPU();
  for (int V : {65536, 70001, 1000}) {
    const std::string v = "V=" + std::to_string(V);
    const std::vector<SampleCase> cs = MakeCases(V, 30 + V % 3);
    const int n = static_cast<int>(cs.size());
    const DevResult ref = RunKernel(cs, false, 1);
    ExpectMatchesHost(cs, ref, v + " split 1");
    for (int splits : {2, 3, 7, 32}) {
      const DevResult d = RunKernel(cs, false, splits);
      for (int i = 0; i < n; ++i) ExpectSameBits(ref, i, d, i, v + " split " + std::to_string(splits) + ", row " + std::to_string(i));
    }
    const int most = std::max(1, std::min(32, V / 2048));
    for (int rows : {1, 16, 256, 1024}) {
      const int s = kernels::SampleSplits(rows, V);
      EXPECT_GE(s, 1) << v << " rows " << rows;
      EXPECT_LE(s, most) << v << " rows " << rows;
    }
    EXPECT_EQ(kernels::SampleSplits(1, V), most) << v;  // one row: the most blocks
    EXPECT_LT(kernels::SampleSplits(1024, V), std::max(2, most)) << v;  // a full card: fewer
  }
}

// Grammar masks (structured output): random sparse masks, a mask that allows one token,
// masks shorter than the vocabulary (the ids past them banned), a mask that allows nothing
// (token 0, log-probability -inf, as the host), together with adjustments; the host's
// choices at B = 1 and in one batch with unmasked rows, and every drawn token allowed.
TEST(CudaSample, GrammarMaskMatchesHost) {
  SKIP_WITHOUT_GPU();
  for (int V : {65536, 1000, 70001}) {
    const std::string v = "V=" + std::to_string(V);
    std::vector<SampleCase> cs = MakeCases(V, 20 + V % 5);
    std::mt19937 g(V);
    const int words = (V + 31) / 32;
    for (size_t i = 0; i < cs.size(); ++i) {
      SampleCase& c = cs[i];
      if (i % 5 == 4) continue;  // some rows stay unmasked
      c.allowed.assign(words, 0u);
      switch (i % 5) {
        case 0:  // ~3% of the tokens, scattered
          for (int t = 0; t < V; ++t)
            if (g() % 32 == 0) c.allowed[t / 32] |= 1u << (t % 32);
          break;
        case 1:  // exactly one token, in the last word
          c.allowed[(V - 3) / 32] |= 1u << ((V - 3) % 32);
          break;
        case 2:  // a short mask: only the first few words, every token in them
          c.allowed.assign(std::min(words, 3), ~0u);
          break;
        case 3:  // a contiguous run that spans several blocks' chunks
          for (int t = V / 4; t < V / 4 + V / 3; ++t) c.allowed[t / 32] |= 1u << (t % 32);
          break;
      }
    }
    SampleCase none = cs[0];
    none.allowed.assign(words, 0u);
    cs.push_back(none);
    ExpectMatchesHost(cs, RunKernel(cs, false), v + " batch");
    const DevResult batch = RunKernel(cs);
    for (size_t i = 0; i < cs.size(); ++i) {
      const std::vector<SampleCase> one = {cs[i]};
      const DevResult b1 = RunKernel(one, false);
      ExpectMatchesHost(one, b1, v + " B=1 case " + std::to_string(i));
      ExpectSameBits(b1, 0, batch, i, v + " B=1 vs batch, case " + std::to_string(i));
      const std::vector<uint32_t>& a = cs[i].allowed;
      if (a.empty() || std::isinf(batch.logprob[i])) continue;
      const int t = batch.token[i];
      EXPECT_TRUE(t / 32 < static_cast<int>(a.size()) && ((a[t / 32] >> (t % 32)) & 1u))
          << v << " case " << i << " drew a token its mask bans: " << t;
    }
  }
}

// Greedy (temperature 0, negative, NaN, or so small that 1 / T overflows) and top-k 1:
// the lowest id at the maximum, also when the maxima lie in different blocks' chunks and
// with NaN / +inf / banned logits; at B = 1 and in a batch.
TEST(CudaSample, GreedyAndTopOneArePlainArgMax) {
  SKIP_WITHOUT_GPU();
  for (int V : {65536, 70001, 1000}) {
    std::mt19937 g(V);
    std::normal_distribution<float> nd(0.f, 2.f);
    std::vector<SampleCase> cs;
    const float temps[] = {0.f, -1.f, std::numeric_limits<float>::quiet_NaN(), 1e-39f, 0.8f, 1.f};
    for (int i = 0; i < 24; ++i) {
      SampleCase c;
      c.logits.resize(V);
      for (float& x : c.logits) x = nd(g);
      const int lo = (V / 3 + 17 * i) % V;  // maxima in different chunks; `lo` the lowest id
      for (int t : {V - 1, lo + (V - lo) / 2, lo}) c.logits[t] = 30.f;
      if (i % 4 == 1) c.logits[lo] = std::numeric_limits<float>::quiet_NaN();  // then the next one wins
      if (i % 4 == 2) c.adjust.emplace_back(lo, kInf);                        // banned: likewise
      if (i % 8 == 3) {  // +inf tokens take everything
        c.logits[V - 2] = kInf;
        c.logits[V / 2 + 1] = kInf;
      }
      c.p.temperature = temps[i % 6];
      c.p.top_k = i % 6 >= 4 ? 1 : (i % 3 == 0 ? 40 : 0);  // top-k 1 at T > 0; greedy ignores top-k/p
      c.p.top_p = i % 2 ? 0.5f : 1.f;
      c.u = 0.37 + 0.02 * i;
      cs.push_back(std::move(c));
    }
    ExpectMatchesHost(cs, RunKernel(cs, false), "greedy batch V=" + std::to_string(V));
    for (size_t i = 0; i < cs.size(); i += 5) {
      const std::vector<SampleCase> one = {cs[i]};
      ExpectMatchesHost(one, RunKernel(one, false), "greedy B=1 V=" + std::to_string(V));
    }
  }
}

// Neither top-k nor top-p restricts (top_p 1 or NaN, top_k 0 or >= V): a categorical draw
// from softmax(logits / T), uniforms from 0 to just below 1.
TEST(CudaSample, UnrestrictedDrawMatchesHost) {
  SKIP_WITHOUT_GPU();
  for (int V : {65536, 70001, 1000}) {
    std::mt19937 g(V + 1);
    std::normal_distribution<float> nd(0.f, 1.5f);
    std::vector<SampleCase> cs;
    const float temps[] = {1.f, 0.7f, 1.5f, 3.f};
    const double us[] = {0.0, 0.5, 0.999999, 0.123, 0.87};
    for (int i = 0; i < 40; ++i) {
      SampleCase c;
      c.logits.resize(V);
      for (float& x : c.logits) x = nd(g);
      if (i % 10 == 9)
        for (float& x : c.logits) x = std::round(x);  // many equal weights
      c.p.temperature = temps[i % 4];
      c.p.top_p = i % 3 == 0 ? std::numeric_limits<float>::quiet_NaN() : 1.f;
      c.p.top_k = i % 5 == 0 ? V : 0;
      c.u = us[i % 5];
      for (int t = 0; t < 20; ++t) c.adjust.emplace_back((t * 3001 + i) % V, t % 4 == 0 ? kInf : 0.7f);
      cs.push_back(std::move(c));
    }
    const std::string v = "unrestricted V=" + std::to_string(V);
    EXPECT_GT(ExpectMatchesHost(cs, RunKernel(cs, false), v), 20);
    for (size_t i = 0; i < cs.size(); i += 7) {
      const std::vector<SampleCase> one = {cs[i]};
      ExpectMatchesHost(one, RunKernel(one, false), v + " B=1");
    }
  }
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
