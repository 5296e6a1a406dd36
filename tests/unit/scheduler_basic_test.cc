// Scheduler tests against the deterministic FakeBackend (server/testing/fake_backend.h).
#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <future>
#include <set>
#include <string>
#include <thread>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/testing/fake_backend.h"
#include "server/testing/stream_collector.h"

namespace rwkvx {
namespace {

using testing::FakeBackend;
using testing::StreamCollector;

struct Fixture {
  explicit Fixture(SchedulerOptions opts = {}, int delay_ms = 0) {
    auto b = std::make_unique<FakeBackend>();
    b->step_delay_ms = delay_ms;
    fake = b.get();
    sched = std::make_unique<Scheduler>(std::move(b), tok.get(), opts, &metrics);
    sched->Start();
  }
  std::shared_ptr<RequestStream> Req(std::vector<int32_t> prompt, int max_tokens,
                                     float temperature = 0, uint64_t seed = 0) {
    GenerateRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = seed;
    return std::make_shared<RequestStream>(std::move(r), 1 << 20);
  }
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  ServerMetrics metrics;
  FakeBackend* fake = nullptr;
  std::unique_ptr<Scheduler> sched;
};

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(1 + (i * 7 + salt) % 200);
  return p;
}

TEST(SchedulerTest, GreedyRunsToLengthAndFreesSession) {
  Fixture f;
  auto s = f.Req(Prompt(10, 1), 8);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  auto& out = c.WaitFinal();
  ASSERT_TRUE(out.finished);
  EXPECT_EQ(out.final_event.finish, FinishReason::kLength);
  EXPECT_EQ(out.tokens.size(), 8u);
  EXPECT_EQ(out.final_event.completion_tokens, 8);
  EXPECT_EQ(out.final_event.prompt_tokens, 10);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(f.fake->live.load(), 0);
}

// The count gauges follow admissions and endings at once, not at the next 20 ms refresh:
// by a stream's third token (two steps after the one that admitted it) they show it running.
// The process's thread names (Linux: /proc/self/task/*/comm).
std::set<std::string> ThreadNames() {
  std::set<std::string> names;
  DIR* d = opendir("/proc/self/task");
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string n;
    if (std::getline(f, n)) names.insert(n);
  }
  closedir(d);
  return names;
}

TEST(SchedulerTest, ThreadsAreNamed) {
  if (!std::ifstream("/proc/self/task/" + std::to_string(getpid()) + "/comm")) GTEST_SKIP() << "no /proc";
  Fixture f;
  auto s = f.Req(Prompt(4, 1), 2);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  ASSERT_TRUE(c.WaitFinal().finished);  // the loop has run: its thread has named itself
  const auto names = ThreadNames();
  EXPECT_TRUE(names.count("rwkvx-sched")) << "the scheduler's loop thread";
  EXPECT_TRUE(names.count("rwkvx-notify")) << "the stream notifier";
}

TEST(SchedulerTest, CountGaugesFollowAdmissionAtOnce) {
  Fixture f;
  for (int round = 0; round < 3; ++round) {
    auto s = f.Req(Prompt(4, round), 1 << 20);
    StreamCollector c(s);
    ASSERT_TRUE(f.sched->Submit(s).ok());
    ASSERT_GE(c.WaitTokens(3).tokens.size(), 3u);
    EXPECT_GE(f.metrics.sessions_active->Value(), 1) << "round " << round;
    EXPECT_GE(f.metrics.requests_running->Value(), 1) << "round " << round;
    s->Cancel();
    ASSERT_TRUE(c.WaitFinal().finished);
    ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
    EXPECT_EQ(f.metrics.sessions_active->Value(), 0) << "round " << round;
  }
}

// A request without stop strings is decoded and pushed by its StreamWriter on the
// notifier's thread; one with a stop string that never matches, on the loop. Both give
// the same events' text and tokens, to max_tokens and to end of text alike.
// And with the writer switched off (SchedulerOptions::stream_writer, --stream-writer off):
// the loop decodes every request, with or without stop strings, to the same text.
TEST(SchedulerTest, WriterTextEqualsTheLoopsText) {
  for (bool eot : {false, true}) {
    SchedulerOptions off;
    off.stream_writer = false;
    Fixture f, f_off(off);
    std::vector<testing::Collected> got;
    for (int run = 0; run < 3; ++run) {
      const bool with_stop = run == 1;
      Fixture& fx = run == 2 ? f_off : f;
      GenerateRequest r;
      r.prompt = Prompt(6, 3);
      r.max_tokens = 300;
      r.sampling.temperature = 1.0f;  // draws bytes of every kind, end of text included
      r.sampling.seed = 77;
      r.stop_at_end_of_text = eot;
      if (with_stop) r.stop_strings = {"\x01\x02never"};
      auto s = std::make_shared<RequestStream>(std::move(r), 1 << 20);
      StreamCollector c(s);
      ASSERT_TRUE(fx.sched->Submit(s).ok());
      got.push_back(c.WaitFinal());
      ASSERT_TRUE(got.back().finished);
    }
    for (int k : {1, 2}) {
      EXPECT_EQ(got[0].tokens, got[k].tokens) << "eot " << eot << " run " << k;
      EXPECT_EQ(got[0].text, got[k].text) << "eot " << eot << " run " << k;
      EXPECT_EQ(got[0].final_event.finish, got[k].final_event.finish) << "eot " << eot << " run " << k;
      EXPECT_EQ(got[0].final_event.completion_tokens, got[k].final_event.completion_tokens) << "run " << k;
    }
    EXPECT_FALSE(got[0].text.empty());
  }
}

TEST(SchedulerTest, LongPromptIsChunked) {
  SchedulerOptions o;
  o.prefill_chunk = 16;
  Fixture f(o);
  auto s = f.Req(Prompt(100, 2), 2);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  EXPECT_TRUE(c.WaitFinal().finished);
  // 100 tokens in chunks of 16: 7 prefill steps (the last one of 4), then 1 decode step.
  EXPECT_GE(f.fake->steps.load(), 8);
}

// Prompt i is Prompt(5 + i * step, i), max_tokens `max_tokens`. Alone: each request on an
// idle scheduler of its own; together: all submitted at once to `f`.
std::vector<std::vector<int32_t>> RunAlone(int n, int step, int max_tokens) {
  std::vector<std::vector<int32_t>> out;
  Fixture f;
  for (int i = 0; i < n; ++i) {
    auto s = f.Req(Prompt(5 + i * step, i), max_tokens);
    StreamCollector c(s);
    EXPECT_TRUE(f.sched->Submit(s).ok());
    out.push_back(c.WaitFinal().tokens);
  }
  return out;
}

std::vector<std::vector<int32_t>> RunTogether(Fixture& f, int n, int step, int max_tokens) {
  std::vector<std::shared_ptr<RequestStream>> ss;
  std::vector<std::unique_ptr<StreamCollector>> cs;
  for (int i = 0; i < n; ++i) {
    ss.push_back(f.Req(Prompt(5 + i * step, i), max_tokens));
    cs.push_back(std::make_unique<StreamCollector>(ss.back()));
  }
  for (auto& s : ss) EXPECT_TRUE(f.sched->Submit(s).ok());
  std::vector<std::vector<int32_t>> out;
  for (auto& c : cs) out.push_back(c->WaitFinal().tokens);
  return out;
}

TEST(SchedulerTest, BatchInvariance) {
  const auto alone = RunAlone(16, 13, 12);
  SchedulerOptions o;
  o.prefill_chunk = 32;
  Fixture f(o);
  EXPECT_EQ(RunTogether(f, 16, 13, 12), alone);
  EXPECT_GT(f.fake->max_batch.load(), 1);
}

// --prefill-interval 4: prompts join the running decodes only every 4th step; every
// request still gets the tokens it gets alone (chunking never depends on the load), and
// the server's metrics count the steps by kind.
TEST(SchedulerTest, PrefillIntervalKeepsTokensAndCountsSteps) {
  const auto alone = RunAlone(12, 11, 10);
  SchedulerOptions o;
  o.prefill_chunk = 16;
  o.prefill_interval = 4;
  Fixture f(o);
  EXPECT_EQ(RunTogether(f, 12, 11, 10), alone);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  double by_kind = 0;
  for (int k = 0; k < 3; ++k) by_kind += f.metrics.steps_kind[k]->Value();
  EXPECT_EQ(by_kind, f.metrics.steps->Value());
  EXPECT_GT(f.metrics.steps_kind[0]->Value(), 0);  // pure decode steps happened
}

TEST(SchedulerTest, SeededSamplingIsReproducible) {
  Fixture f;
  std::vector<int32_t> first;
  for (int rep = 0; rep < 2; ++rep) {
    auto s = f.Req(Prompt(7, 3), 10, 1.0f, 1234);
    StreamCollector c(s);
    ASSERT_TRUE(f.sched->Submit(s).ok());
    auto t = c.WaitFinal().tokens;
    if (rep == 0) first = t;
    else EXPECT_EQ(t, first);
  }
}

TEST(SchedulerTest, QueueFullIsResourceExhausted) {
  SchedulerOptions o;
  o.max_running = 1;
  o.max_queued = 1;
  Fixture f(o, /*delay_ms=*/2);
  auto a = f.Req(Prompt(3, 1), 100000);
  StreamCollector ca(a);
  ASSERT_TRUE(f.sched->Submit(a).ok());
  ca.WaitTokens(1);
  auto b = f.Req(Prompt(3, 2), 4);
  ASSERT_TRUE(f.sched->Submit(b).ok());
  auto c = f.Req(Prompt(3, 3), 4);
  EXPECT_EQ(f.sched->Submit(c).code(), absl::StatusCode::kResourceExhausted);
  a->Cancel();
  EXPECT_EQ(ca.WaitFinal().final_event.finish, FinishReason::kCancelled);
  StreamCollector cb(b);
  EXPECT_EQ(cb.WaitFinal().final_event.finish, FinishReason::kLength);
}

TEST(SchedulerTest, CancelFreesSessionWithinAStep) {
  Fixture f({}, /*delay_ms=*/1);
  auto s = f.Req(Prompt(3, 1), 1000000);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  c.WaitTokens(3);
  s->Cancel();
  auto& out = c.WaitFinal();
  EXPECT_EQ(out.final_event.finish, FinishReason::kCancelled);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(f.fake->live.load(), 0);
}

TEST(SchedulerTest, DeadlineEndsRequest) {
  Fixture f({}, 1);
  auto s = f.Req(Prompt(3, 1), 1000000);
  s->mutable_request().deadline = absl::Now() + absl::Milliseconds(20);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  EXPECT_EQ(c.WaitFinal().final_event.finish, FinishReason::kTimeout);
}

TEST(SchedulerTest, StopStringEndsAndIsWithheld) {
  Fixture f;
  // Find the greedy text, then stop at a piece of it.
  auto s = f.Req(Prompt(4, 9), 20);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  auto full = c.WaitFinal().text;
  ASSERT_GE(full.size(), 6u);
  auto s2 = f.Req(Prompt(4, 9), 20);
  s2->mutable_request().stop_strings = {full.substr(3, 2)};
  StreamCollector c2(s2);
  ASSERT_TRUE(f.sched->Submit(s2).ok());
  auto& out = c2.WaitFinal();
  EXPECT_EQ(out.final_event.finish, FinishReason::kStop);
  EXPECT_EQ(out.text, full.substr(0, full.find(full.substr(3, 2))));
}

TEST(SchedulerTest, StopTokenEnds) {
  Fixture f;
  auto s = f.Req(Prompt(4, 5), 20);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  auto toks = c.WaitFinal().tokens;
  auto s2 = f.Req(Prompt(4, 5), 20);
  s2->mutable_request().stop_tokens = {toks[2]};
  StreamCollector c2(s2);
  ASSERT_TRUE(f.sched->Submit(s2).ok());
  auto& out = c2.WaitFinal();
  EXPECT_EQ(out.final_event.finish, FinishReason::kStop);
  EXPECT_EQ(out.tokens, std::vector<int32_t>(toks.begin(), toks.begin() + 2));
}

TEST(SchedulerTest, DrainRefusesNewAndShutsDownAfterGrace) {
  Fixture f({}, 1);
  auto s = f.Req(Prompt(3, 1), 1000000);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  c.WaitTokens(1);
  f.sched->BeginDrain(absl::Milliseconds(30));
  EXPECT_EQ(f.sched->Submit(f.Req(Prompt(3, 1), 2)).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c.WaitFinal().final_event.finish, FinishReason::kShutdown);
  EXPECT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(f.fake->live.load(), 0);
}

TEST(SchedulerTest, SlowReaderIsDroppedNotWaitedFor) {
  Fixture f;
  GenerateRequest r;
  r.prompt = Prompt(3, 1);
  r.max_tokens = 1000000;
  // Only the overflow may end it: its events are decoded and pushed on the notifier's
  // thread, so it may run ahead of the overflow by a few steps (drawing end of text there
  // would end it first).
  r.stop_at_end_of_text = false;
  auto slow = std::make_shared<RequestStream>(std::move(r), /*max_buffered_bytes=*/512);
  ASSERT_TRUE(f.sched->Submit(slow).ok());  // nobody reads it
  auto fast = f.Req(Prompt(4, 2), 8);
  StreamCollector cf(fast);
  ASSERT_TRUE(f.sched->Submit(fast).ok());
  EXPECT_EQ(cf.WaitFinal().final_event.finish, FinishReason::kLength);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(30)));
  std::vector<GenerateEvent> evs;
  slow->PopAll(&evs);
  ASSERT_FALSE(evs.empty());
  EXPECT_TRUE(evs.back().final);
  EXPECT_EQ(evs.back().finish, FinishReason::kSlowClient) << evs.back().status << " events " << evs.size();
  EXPECT_EQ(f.fake->live.load(), 0);
}

TEST(SchedulerTest, BackendErrorEndsRequestsAndFreesSessions) {
  Fixture f;
  f.fake->fail_steps = true;
  auto s = f.Req(Prompt(3, 1), 5);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  auto& out = c.WaitFinal();
  EXPECT_EQ(out.final_event.finish, FinishReason::kError);
  EXPECT_EQ(out.final_event.status.code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(f.fake->live.load(), 0);
}

TEST(SchedulerTest, StoredSessionContinues) {
  Fixture f;
  std::promise<absl::StatusOr<StoredSessionInfo>> p;
  f.sched->CreateSession("conv", [&](absl::StatusOr<StoredSessionInfo> r) { p.set_value(r); });
  ASSERT_TRUE(p.get_future().get().ok());
  // Two turns in the session == one request with the concatenated history.
  auto a = f.Req(Prompt(5, 1), 4);
  a->mutable_request().session_name = "conv";
  StreamCollector ca(a);
  ASSERT_TRUE(f.sched->Submit(a).ok());
  auto ta = ca.WaitFinal().tokens;
  auto b = f.Req(Prompt(3, 2), 4);
  b->mutable_request().session_name = "conv";
  StreamCollector cb(b);
  ASSERT_TRUE(f.sched->Submit(b).ok());
  auto tb = cb.WaitFinal().tokens;

  auto all = Prompt(5, 1);
  all.insert(all.end(), ta.begin(), ta.end());
  auto p2 = Prompt(3, 2);
  all.insert(all.end(), p2.begin(), p2.end());
  auto c = f.Req(all, 4);
  StreamCollector cc(c);
  ASSERT_TRUE(f.sched->Submit(c).ok());
  EXPECT_EQ(cc.WaitFinal().tokens, tb);

  std::promise<absl::Status> d;
  f.sched->DeleteSession("conv", [&](absl::Status st) { d.set_value(st); });
  EXPECT_TRUE(d.get_future().get().ok());
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  std::promise<absl::StatusOr<StoredSessionInfo>> g;
  f.sched->GetSession("conv", [&](absl::StatusOr<StoredSessionInfo> r) { g.set_value(r); });
  EXPECT_EQ(g.get_future().get().status().code(), absl::StatusCode::kNotFound);
}


// Create/append prefill whole chunks as planned steps: in the same backend calls as the
// running requests, counted by the step metrics (the backend's step has one caller).
TEST(SchedulerTest, SessionPrefillSharesTheStepsOfRunningRequests) {
  SchedulerOptions o;
  o.prefill_chunk = 8;
  Fixture f(o, /*delay_ms=*/1);
  GenerateRequest r;
  r.prompt = Prompt(4, 1);
  r.max_tokens = 1 << 30;  // decodes until cancelled, into a buffer that never fills up
  auto s = std::make_shared<RequestStream>(std::move(r), size_t{1} << 34);
  StreamCollector c(s);
  ASSERT_TRUE(f.sched->Submit(s).ok());
  c.WaitTokens(1);
  std::promise<absl::StatusOr<StoredSessionInfo>> p;
  f.sched->CreateSession("pre", Prompt(20, 3), false,
                         [&](absl::StatusOr<StoredSessionInfo> r) { p.set_value(r); });
  auto info = p.get_future().get();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->tokens_seen, 16);  // two whole chunks; the chunk with the last token waits
  EXPECT_EQ(info->pending_tokens, 4);
  EXPECT_FALSE(info->busy);
  EXPECT_EQ(f.fake->max_batch.load(), 2);  // each chunk rode along a decode step
  s->Cancel();
  EXPECT_EQ(c.WaitFinal().final_event.finish, FinishReason::kCancelled);
  ASSERT_TRUE(f.sched->WaitIdle(absl::Seconds(10)));
  f.sched->Stop();
  EXPECT_EQ(f.metrics.steps->Value(), f.fake->steps.load());
}

}  // namespace
}  // namespace rwkvx

namespace rwkvx {
namespace {

// A model with more logits than the tokenizer can spell (like 65536 vs the world
// vocabulary's 65530): the fake's greedy choice lands on ids 257..299 about one step in
// seven, and the scheduler must never emit them.
TEST(SchedulerTest, NeverSamplesIdsTheTokenizerCannotSpell) {
  auto tok = MakeByteTokenizer();  // ids 1..256 (0 = end of text)
  ServerMetrics metrics;
  auto b = std::make_unique<testing::FakeBackend>(300);
  Scheduler sched(std::move(b), tok.get(), SchedulerOptions{}, &metrics);
  sched.Start();
  int emitted = 0;
  for (int salt = 0; salt < 4; ++salt) {
    for (float temperature : {0.0f, 1.0f}) {
      GenerateRequest r;
      r.prompt = Prompt(5, salt);
      r.max_tokens = 32;
      r.stop_at_end_of_text = false;
      r.sampling.temperature = temperature;
      r.sampling.seed = 7;
      auto s = std::make_shared<RequestStream>(std::move(r), 1 << 20);
      testing::StreamCollector c(s);
      ASSERT_TRUE(sched.Submit(s).ok());
      auto& out = c.WaitFinal();
      for (int32_t t : out.tokens) {
        EXPECT_TRUE(tok->IsKnown(t)) << "emitted unspellable id " << t;
        ++emitted;
      }
    }
  }
  EXPECT_EQ(emitted, 4 * 2 * 32);
  sched.Stop();
}

}  // namespace
}  // namespace rwkvx
