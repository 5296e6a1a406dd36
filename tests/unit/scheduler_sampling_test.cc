// Device sampling (Backend::StepSampled): the scheduler hands a backend the request's
// adjustments and draws (Sampler::DeviceSpec) instead of sampling the logits row itself.
// Against a fake backend that draws from the spec alone, every request must produce the
// same tokens and log-probabilities as host sampling: this checks the plumbing (penalty
// state, bans, unspellable ids, the generator's draws) that a GPU sampler relies on.
#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/testing/fake_backend.h"
#include "server/testing/stream_collector.h"

namespace rwkvx {
namespace {

struct SampledRun {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(1 + (i * 11 + salt) % 200);
  return p;
}

std::vector<GenerateRequest> Requests() {
  std::vector<GenerateRequest> rs;
  for (int i = 0; i < 6; ++i) {
    GenerateRequest r;
    r.prompt = Prompt(5 + 3 * i, i);
    r.max_tokens = 40;
    r.stop_at_end_of_text = false;
    r.logprobs = true;
    SamplingParams& p = r.sampling;
    p.seed = 100 + i;
    switch (i) {
      case 0: p.temperature = 0; break;  // greedy
      case 1: p.temperature = 1.0f; break;
      case 2: p.temperature = 0.7f; p.top_p = 0.5f; break;
      case 3: p.temperature = 1.3f; p.top_k = 20; p.presence_penalty = 0.4f; p.frequency_penalty = 0.3f;
              p.logit_bias = {{7, 2.5f}, {40, -3.0f}, {120, 4.0f}}; break;
      case 4: p.temperature = 1.0f; p.top_p = 0.9f; p.top_k = 50; p.banned_tokens = {5, 17, 40}; p.frequency_penalty = 1.0f; break;
      case 5: p.temperature = 2.0f; p.presence_penalty = 2.0f; break;
    }
    rs.push_back(std::move(r));
  }
  return rs;
}

// A started scheduler on a fake of vocab 300 (ids 257..299 are unspellable by the byte
// tokenizer and must be banned on both paths) that samples on the "device" or not;
// device sampling is asked for (used only where the backend supports it).
struct FakeSched {
  explicit FakeSched(bool device, SchedulerOptions opts = {}) {
    auto b = std::make_unique<testing::FakeBackend>(300);
    b->device_sampling = device;
    fake = b.get();
    opts.device_sampling = true;
    sched = std::make_unique<Scheduler>(std::move(b), tok.get(), opts, &metrics);
    sched->Start();
  }
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  ServerMetrics metrics;
  testing::FakeBackend* fake = nullptr;
  std::unique_ptr<Scheduler> sched;
};

// All requests at once (batched steps).
std::vector<SampledRun> RunAll(bool device, int* device_sampled, int top_logprobs = 0) {
  FakeSched f(device);
  Scheduler& sched = *f.sched;
  const auto& tok = f.tok;
  std::vector<std::shared_ptr<RequestStream>> ss;
  std::vector<std::unique_ptr<testing::StreamCollector>> cs;
  for (GenerateRequest& r : Requests()) {
    r.sampling.top_logprobs = top_logprobs;
    ss.push_back(std::make_shared<RequestStream>(std::move(r), 1 << 20));
    cs.push_back(std::make_unique<testing::StreamCollector>(ss.back()));
  }
  for (auto& s : ss) EXPECT_TRUE(sched.Submit(s).ok());
  std::vector<SampledRun> out;
  for (auto& c : cs) {
    auto& got = c->WaitFinal();
    EXPECT_TRUE(got.finished);
    for (int32_t t : got.tokens) EXPECT_TRUE(t == tok->EndOfText() || tok->IsKnown(t)) << "unspellable id " << t;
    out.push_back(SampledRun{got.tokens, got.logprobs});
  }
  sched.Stop();
  *device_sampled = f.fake->device_sampled.load();
  return out;
}

TEST(SchedulerSamplingTest, DeviceSamplingGivesTheHostSamplersTokens) {
  int host_drawn = -1, device_drawn = -1;
  const std::vector<SampledRun> host = RunAll(false, &host_drawn);
  const std::vector<SampledRun> device = RunAll(true, &device_drawn);
  EXPECT_EQ(host_drawn, 0);
  // Every generated token went through the spec, each request's first one too (the
  // prefix cache is off: nothing keeps the prompt's last logits row).
  EXPECT_EQ(device_drawn, 6 * 40);
  ASSERT_EQ(host.size(), device.size());
  bool any_diverse = false;
  for (size_t i = 0; i < host.size(); ++i) {
    EXPECT_EQ(device[i].tokens, host[i].tokens) << "request " << i;
    ASSERT_EQ(device[i].logprobs.size(), host[i].logprobs.size());
    for (size_t t = 0; t < host[i].logprobs.size(); ++t)
      EXPECT_FLOAT_EQ(device[i].logprobs[t], host[i].logprobs[t]) << "request " << i << " token " << t;
    // The sampled requests must actually draw (not always the fake's greedy token).
    if (i > 0 && host[i].tokens.size() > 1)
      for (size_t t = 1; t < host[i].tokens.size(); ++t) any_diverse |= host[i].tokens[t] != host[i].tokens[0];
  }
  EXPECT_TRUE(any_diverse);
}

// The prompt's last row reaches the host only where the prefix cache keeps it with the
// prompt's checkpoint (on a backend other than the CPU reference: prompts of a multiple of
// prefill_chunk tokens); every other first token is drawn in the backend. Tokens are the
// host path's either way.
TEST(SchedulerSamplingTest, PromptEndRowToTheHostOnlyWhenTheCacheKeepsIt) {
  auto run = [](bool device, int* drawn) {
    SchedulerOptions opts;
    opts.prefill_chunk = 8;
    opts.prefix_cache_bytes = size_t{1} << 20;
    opts.prefix_cache_min_tokens = 4;
    FakeSched f(device, opts);
    Scheduler& sched = *f.sched;
    std::vector<std::vector<int32_t>> out;
    for (int len : {16, 13}) {  // 16: checkpointed with its row; 13: off the grid
      GenerateRequest r;
      r.prompt = Prompt(len, len);
      r.max_tokens = 10;
      r.stop_at_end_of_text = false;
      r.sampling.temperature = 1.0f;
      r.sampling.seed = 7 + len;
      auto s = std::make_shared<RequestStream>(std::move(r), 1 << 20);
      testing::StreamCollector c(s);
      EXPECT_TRUE(sched.Submit(s).ok());
      auto& got = c.WaitFinal();
      EXPECT_TRUE(got.finished);
      out.push_back(got.tokens);
    }
    sched.Stop();
    *drawn = f.fake->device_sampled.load();
    return out;
  };
  int host_drawn = -1, device_drawn = -1;
  const auto host = run(false, &host_drawn);
  const auto device = run(true, &device_drawn);
  EXPECT_EQ(host_drawn, 0);
  EXPECT_EQ(device_drawn, 9 + 10);  // the 16-token prompt's first token came from its row
  EXPECT_EQ(device, host);
  for (const auto& t : host) EXPECT_EQ(t.size(), 10u);
}

TEST(SchedulerSamplingTest, TopLogprobsTakeTheHostPath) {
  int drawn = -1;
  const std::vector<SampledRun> runs = RunAll(true, &drawn, /*top_logprobs=*/3);
  EXPECT_EQ(drawn, 0);
  for (const SampledRun& r : runs) EXPECT_EQ(r.tokens.size(), 40u);
}

TEST(SamplerTest, DeviceSpecReproducesSample) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.8f;
  p.top_k = 30;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.banned_tokens = {3, 9, 3};
  p.logit_bias = {{2, 1.5f}, {9, 3.0f}, {11, -2.0f}, {12, 0.75f}};  // 9 stays banned
  p.seed = 42;
  Sampler a(p, nullptr), b(p, nullptr);
  const int V = 97;
  for (int step = 0; step < 200; ++step) {
    std::vector<float> la(V), lb(V);
    for (int v = 0; v < V; ++v) la[v] = lb[v] = static_cast<float>(((v * 37 + step * 11) % 29) * 0.2);
    la[7] = lb[7] = -std::numeric_limits<float>::infinity();  // `a` has no extra ban: as if applied
    const SampleResult ra = a.Sample(la.data(), V);
    DeviceSampling ds;
    b.DeviceSpec({7, 9}, &ds);
    // Each token once; bans as +inf; the extra bans included.
    std::vector<int32_t> seen;
    for (const auto& [t, v] : ds.adjust) {
      EXPECT_EQ(std::count(seen.begin(), seen.end(), t), 0) << t;
      seen.push_back(t);
      if (t == 3 || t == 7 || t == 9) {
        EXPECT_EQ(v, std::numeric_limits<float>::infinity());
      }
    }
    EXPECT_NE(std::find(seen.begin(), seen.end(), 7), seen.end());
    ApplyDeviceAdjustments(ds.adjust, lb.data(), V);
    const SampleResult rb = b.SampleAdjusted(lb.data(), V, ds.uniform);
    ASSERT_EQ(ra.token, rb.token) << "step " << step;
    EXPECT_FLOAT_EQ(ra.logprob, rb.logprob);
    a.Accept(ra.token);
    b.Accept(rb.token);
  }
}

// Zero penalties: the adjustment list holds the bans only and does not grow with the
// generated tokens (a growing list grows the CUDA backend's step metadata, which drops
// its captured graphs). A non-zero penalty still lists every seen token.
TEST(SamplerTest, DeviceSpecListDoesNotGrowWithZeroPenalties) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.banned_tokens = {5, 2};
  Sampler s(p, nullptr);
  DeviceSampling ds;
  for (int step = 0; step < 50; ++step) {
    s.DeviceSpec({11}, &ds);
    ASSERT_EQ(ds.adjust.size(), 3u) << "step " << step;
    for (const auto& [t, v] : ds.adjust) EXPECT_EQ(v, std::numeric_limits<float>::infinity()) << t;
    s.Accept(100 + step);  // a new token every step
  }
  EXPECT_EQ(s.occurrence().size(), 0u);  // nothing to count with zero penalties
  p.frequency_penalty = 0.5f;  // count 1 each: a penalty on every seen token
  Sampler f(p, nullptr);
  for (int step = 0; step < 10; ++step) f.Accept(100 + step);
  f.DeviceSpec({11}, &ds);
  EXPECT_EQ(ds.adjust.size(), 13u);
}

// logit_bias: added to the logits on the host; in the device list as one value per token
// (penalty - bias), alongside the bans; a banned token's bias is dropped. With zero
// penalties the list stays the same size step after step.
TEST(SamplerTest, LogitBiasInTheDeviceSpec) {
  SamplingParams p;
  p.temperature = 0;
  p.banned_tokens = {4};
  p.logit_bias = {{4, 50.0f}, {6, 30.0f}, {8, -1.0f}};
  Sampler s(p, nullptr);
  std::vector<float> l(10, 0.0f);
  EXPECT_EQ(s.Sample(l.data(), 10).token, 6);  // +30 wins; the ban beats +50
  EXPECT_EQ(l[8], -1.0f);
  DeviceSampling ds;
  for (int step = 0; step < 5; ++step) {
    s.DeviceSpec({}, &ds);
    ASSERT_EQ(ds.adjust.size(), 3u);
    s.Accept(6);
  }
  std::sort(ds.adjust.begin(), ds.adjust.end());
  EXPECT_EQ(ds.adjust[0], (std::pair<int32_t, float>{4, std::numeric_limits<float>::infinity()}));
  EXPECT_EQ(ds.adjust[1], (std::pair<int32_t, float>{6, -30.0f}));
  EXPECT_EQ(ds.adjust[2], (std::pair<int32_t, float>{8, 1.0f}));
}

}  // namespace
}  // namespace rwkvx
