// --overlap-steps (SchedulerOptions::overlap_steps): each step's results are taken
// (Backend::EndStep) only after the loop's other host work, while the FakeBackend keeps
// the step "in flight" the way the CUDA backend's stream does (its outputs reach the
// caller's vectors only at EndStep). The tokens of every request must not depend on it,
// and whatever ends a request while a step is in flight must see that step's results.
#include <future>
#include <memory>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/testing/fake_backend.h"
#include "server/testing/stream_collector.h"

namespace rwkvx {
namespace {

using testing::Collected;
using testing::FakeBackend;
using testing::StreamCollector;

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(1 + (i * 11 + salt * 5) % 200);
  return p;
}

// A mixed load: greedy and seeded draws, logprobs, stop strings, stop tokens, long
// prompts (chunked), on a backend whose memory forces preemptions.
std::vector<Collected> RunMixed(bool overlap, int* begun, int* exports) {
  auto tok = MakeByteTokenizer();
  ServerMetrics metrics;
  auto b = std::make_unique<FakeBackend>();
  b->device_sampling = true;
  b->in_flight_steps = overlap;
  b->fixed_bytes = 100;
  b->token_bytes = 10;
  b->unreserved_token_bytes = 10;  // grows past its reservations: preemptions
  b->capacity = 4000;
  FakeBackend* fake = b.get();
  SchedulerOptions o;
  o.overlap_steps = overlap;
  o.device_sampling = true;
  o.prefill_chunk = 8;
  o.max_batch_tokens = 40;
  Scheduler sched(std::move(b), tok.get(), o, &metrics);
  sched.Start();
  std::vector<std::unique_ptr<StreamCollector>> cs;
  for (int i = 0; i < 20; ++i) {
    GenerateRequest r;
    r.prompt = Prompt(i % 4 == 0 ? 30 : 5, i);
    r.max_tokens = 10 + (i * 7) % 30;
    r.stop_at_end_of_text = false;
    r.sampling.temperature = i % 3 == 0 ? 0.0f : 0.9f;
    r.sampling.seed = static_cast<uint64_t>(i) + 1;
    r.logprobs = i % 2 == 0;
    if (i % 5 == 1) r.stop_strings = {"\x41"};
    if (i % 5 == 2) r.stop_tokens = {7, 9};
    auto s = std::make_shared<RequestStream>(std::move(r), 1 << 20);
    cs.push_back(std::make_unique<StreamCollector>(s));
    EXPECT_TRUE(sched.Submit(s).ok());
  }
  std::vector<Collected> out;
  for (auto& c : cs) out.push_back(c->WaitFinal(120));
  EXPECT_TRUE(sched.WaitIdle(absl::Seconds(30)));
  *begun = fake->begun.load();
  *exports = fake->exports.load();
  EXPECT_EQ(fake->memory_failures.load(), 0);
  sched.Stop();
  return out;
}

TEST(SchedulerOverlap, OverlappedStepsGiveTheSameTokensAsWaitedSteps) {
  int begun_off = 0, begun_on = 0, exports_off = 0, exports_on = 0;
  auto waited = RunMixed(false, &begun_off, &exports_off);
  auto overlapped = RunMixed(true, &begun_on, &exports_on);
  EXPECT_EQ(begun_off, 0);  // the synchronous form: nothing was ever in flight
  EXPECT_GT(begun_on, 0);
  EXPECT_GT(exports_on, 0);  // preemptions happened with steps in flight
  ASSERT_EQ(waited.size(), overlapped.size());
  for (size_t i = 0; i < waited.size(); ++i) {
    ASSERT_TRUE(waited[i].finished && overlapped[i].finished) << "request " << i;
    EXPECT_EQ(waited[i].final_event.finish, overlapped[i].final_event.finish) << overlapped[i].final_event.status;
    EXPECT_EQ(waited[i].tokens, overlapped[i].tokens) << "request " << i;
    EXPECT_EQ(waited[i].logprobs, overlapped[i].logprobs) << "request " << i;
    EXPECT_EQ(waited[i].text, overlapped[i].text) << "request " << i;
    EXPECT_EQ(waited[i].final_event.completion_tokens, overlapped[i].final_event.completion_tokens);
  }
}

// A generate on a named session cancelled while a step is in flight: the session keeps
// exactly the history the client saw (prompt and every token streamed), so a next turn
// equals one request over that whole history. Without the step settled first, the
// session's state would have taken one more token than its bookkeeping says.
TEST(SchedulerOverlap, CancelWhileAStepIsInFlightKeepsTheSessionExact) {
  auto tok = MakeByteTokenizer();
  ServerMetrics metrics;
  auto b = std::make_unique<FakeBackend>();
  FakeBackend* fake = b.get();
  SchedulerOptions o;
  o.overlap_steps = true;
  Scheduler sched(std::move(b), tok.get(), o, &metrics);
  sched.Start();
  for (int round = 0; round < 4; ++round) {
    const std::string name = "conv" + std::to_string(round);
    std::promise<absl::StatusOr<StoredSessionInfo>> p;
    sched.CreateSession(name, [&](absl::StatusOr<StoredSessionInfo> r) { p.set_value(r); });
    ASSERT_TRUE(p.get_future().get().ok());
    GenerateRequest r;
    r.prompt = Prompt(6, round);
    r.max_tokens = 1 << 20;
    r.stop_at_end_of_text = false;
    r.session_name = name;
    auto a = std::make_shared<RequestStream>(std::move(r), 1 << 20);
    StreamCollector ca(a);
    ASSERT_TRUE(sched.Submit(a).ok());
    ASSERT_GE(ca.WaitTokens(3 + round).tokens.size(), 3u + round);
    a->Cancel();
    Collected first = ca.WaitFinal();
    ASSERT_TRUE(first.finished);
    EXPECT_EQ(first.final_event.finish, FinishReason::kCancelled);

    GenerateRequest r2;
    r2.prompt = Prompt(3, 50 + round);
    r2.max_tokens = 6;
    r2.stop_at_end_of_text = false;
    r2.session_name = name;
    auto b2 = std::make_shared<RequestStream>(std::move(r2), 1 << 20);
    StreamCollector cb(b2);
    ASSERT_TRUE(sched.Submit(b2).ok());
    auto turn2 = cb.WaitFinal().tokens;

    GenerateRequest whole;
    whole.prompt = Prompt(6, round);
    whole.prompt.insert(whole.prompt.end(), first.tokens.begin(), first.tokens.end());
    auto p2 = Prompt(3, 50 + round);
    whole.prompt.insert(whole.prompt.end(), p2.begin(), p2.end());
    whole.max_tokens = 6;
    whole.stop_at_end_of_text = false;
    auto c = std::make_shared<RequestStream>(std::move(whole), 1 << 20);
    StreamCollector cc(c);
    ASSERT_TRUE(sched.Submit(c).ok());
    EXPECT_EQ(cc.WaitFinal().tokens, turn2) << "round " << round;
  }
  EXPECT_GT(fake->begun.load(), 0);
  ASSERT_TRUE(sched.WaitIdle(absl::Seconds(30)));
  sched.Stop();
}

}  // namespace
}  // namespace rwkvx
