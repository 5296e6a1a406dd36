// The scheduler's memory rules (docs/MEMORY.md): reservations, refusal of requests that
// can never fit, preemption and exact resume, and a lost backend. Against the FakeBackend
// (memory model: server/testing/fake_backend.h) and the CPU backend.
#include <functional>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/testing/fake_backend.h"
#include "server/testing/stream_collector.h"
#include "tests/unit/small_model.h"

namespace rwkvx {
namespace {

using testing::Collected;
using testing::FakeBackend;
using testing::StreamCollector;

std::shared_ptr<RequestStream> Request(int salt, int prompt_len, int max_tokens, bool stop_at_eot = true) {
  GenerateRequest r;
  r.stop_at_end_of_text = stop_at_eot;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(1 + (i * 13 + salt * 7) % 200);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.8f;  // the sampler's generator must survive a preemption
  r.sampling.seed = static_cast<uint64_t>(salt) + 1;
  r.logprobs = true;
  return std::make_shared<RequestStream>(std::move(r), 1 << 20);
}

// Submits `n` requests at once to a scheduler over `backend` and collects them all;
// `check` runs while the backend (owned by the scheduler) still lives.
std::vector<Collected> RunAll(std::unique_ptr<Backend> backend, int n, int prompt_len, int max_tokens,
                              SchedulerOptions o = {}, std::function<void()> check = {}) {
  auto tok = MakeByteTokenizer();
  ServerMetrics metrics;
  Scheduler sched(std::move(backend), tok.get(), o, &metrics);
  sched.Start();
  std::vector<std::unique_ptr<StreamCollector>> cs;
  for (int i = 0; i < n; ++i) {
    auto s = Request(i, prompt_len, max_tokens);
    cs.push_back(std::make_unique<StreamCollector>(s));
    EXPECT_TRUE(sched.Submit(s).ok());
  }
  std::vector<Collected> out;
  for (auto& c : cs) out.push_back(c->WaitFinal(120));
  EXPECT_TRUE(sched.WaitIdle(absl::Seconds(30)));
  if (check) check();
  sched.Stop();
  return out;
}

std::unique_ptr<FakeBackend> Fake(size_t capacity, size_t unreserved) {
  auto b = std::make_unique<FakeBackend>();
  b->fixed_bytes = 100;
  b->token_bytes = 10;
  b->unreserved_token_bytes = unreserved;
  b->capacity = capacity;
  return b;
}

void ExpectSame(const std::vector<Collected>& a, const std::vector<Collected>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(b[i].finished);
    EXPECT_EQ(a[i].final_event.finish, b[i].final_event.finish) << b[i].final_event.status;
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "request " << i;
    EXPECT_EQ(a[i].logprobs, b[i].logprobs) << "request " << i;  // bit for bit
  }
}

TEST(SchedulerMemory, NeverFittingRequestIsRefusedAtSubmit) {
  auto tok = MakeByteTokenizer();
  ServerMetrics metrics;
  Scheduler sched(Fake(1000, 0), tok.get(), {}, &metrics);
  sched.Start();
  // 100 + 10 * (10 + 90) = 1100 > 1000: refused before anything streams.
  absl::Status s = sched.Submit(Request(1, 10, 90));
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  // 100 + 10 * (10 + 80) = 1000: fits.
  auto ok = Request(2, 10, 80);
  StreamCollector c(ok);
  ASSERT_TRUE(sched.Submit(ok).ok());
  EXPECT_EQ(c.WaitFinal().final_event.finish, FinishReason::kLength);
}

TEST(SchedulerMemory, RequestsWaitForReservationsAndAllComplete) {
  // Each request reserves 100 + 10 * (8 + 40) = 580; 2000 holds three at a time. The
  // reservations are exact here: nobody is preempted, nobody fails, the rest wait.
  auto solo = RunAll(Fake(0, 0), 12, 8, 40);
  auto fake = Fake(2000, 0);
  FakeBackend* f = fake.get();
  ExpectSame(solo, RunAll(std::move(fake), 12, 8, 40, {}, [f] {
    EXPECT_EQ(f->memory_failures.load(), 0);
    EXPECT_EQ(f->exports.load(), 0);
    EXPECT_LE(f->max_batch.load(), 3);  // some waited
  }));
}

TEST(SchedulerMemory, GrowthPastReservationsPreemptsAndResumesExactly) {
  // Sessions grow twice what they reserve (like copy-on-write copies): three are admitted,
  // then outgrow 2000; the newest are preempted, resumed later, and continue exactly.
  auto solo = RunAll(Fake(0, 0), 16, 8, 40);
  auto fake = Fake(2000, 10);
  FakeBackend* f = fake.get();
  ExpectSame(solo, RunAll(std::move(fake), 16, 8, 40, {}, [f] {
    EXPECT_EQ(f->memory_failures.load(), 0);  // a step never fails for memory
    EXPECT_GT(f->exports.load(), 0);          // preemptions happened
  }));
}

TEST(SchedulerMemory, LostBackendEndsEverythingUnavailable) {
  auto tok = MakeByteTokenizer();
  ServerMetrics metrics;
  auto fake = Fake(0, 0);
  FakeBackend* f = fake.get();
  SchedulerOptions o;
  o.max_running = 2;
  Scheduler sched(std::move(fake), tok.get(), o, &metrics);
  std::atomic<int> fatal_calls{0};
  sched.SetFatalCallback([&] { fatal_calls.fetch_add(1); });
  sched.Start();
  std::vector<std::unique_ptr<StreamCollector>> cs;
  for (int i = 0; i < 3; ++i) {  // two running, one waiting
    auto s = Request(i, 4, 1000000, /*stop_at_eot=*/false);
    cs.push_back(std::make_unique<StreamCollector>(s));
    ASSERT_TRUE(sched.Submit(s).ok());
  }
  cs[0]->WaitTokens(2);
  f->lose_backend.store(true);
  for (auto& c : cs) {
    Collected& out = c->WaitFinal();
    ASSERT_TRUE(out.finished);
    EXPECT_EQ(out.final_event.finish, FinishReason::kError);
    EXPECT_TRUE(absl::IsUnavailable(out.final_event.status)) << out.final_event.status;
  }
  EXPECT_TRUE(sched.fatal());
  EXPECT_TRUE(sched.draining());
  EXPECT_EQ(fatal_calls.load(), 1);
  EXPECT_TRUE(absl::IsUnavailable(sched.Submit(Request(9, 4, 4))));
  EXPECT_TRUE(IsBackendLost(BackendLostError("x")));
  EXPECT_FALSE(IsBackendLost(absl::InternalError("x")));
}

// The CPU backend with reservations that see only the fixed state (as if every KV row
// were a copy-on-write surprise): the budget forces preemptions, and every request's
// tokens and logprobs equal an unpreempted run bit for bit.
class UnderReserving : public Backend {
 public:
  explicit UnderReserving(std::unique_ptr<Backend> b) : b_(std::move(b)) {}
  std::string Name() const override { return b_->Name(); }
  const Model& model() const override { return b_->model(); }
  absl::StatusOr<SessionId> CreateSession() override { return b_->CreateSession(); }
  absl::Status FreeSession(SessionId id) override { return b_->FreeSession(id); }
  absl::StatusOr<SessionState> ExportSession(SessionId id) const override {
    ++exports;
    return b_->ExportSession(id);
  }
  absl::StatusOr<SessionId> ImportSession(const SessionState& s) override { return b_->ImportSession(s); }
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    return b_->Step(items, logits);
  }
  size_t SessionBytes(SessionId id) const override { return b_->SessionBytes(id); }
  size_t SessionKvTokens(SessionId id) const override { return b_->SessionKvTokens(id); }
  MemoryInfo Memory() const override { return b_->Memory(); }
  size_t MaxSessionBytes() const override { return b_->MaxSessionBytes(); }
  size_t SessionBytesFor(size_t) const override { return b_->SessionBytesFor(0); }
  size_t StepBytes(SessionId id, size_t tokens) const override { return b_->StepBytes(id, tokens); }

  mutable int exports = 0;

 private:
  std::unique_ptr<Backend> b_;
};

std::unique_ptr<Backend> Cpu(size_t budget) {
  auto m = testing::SmallSparseModel(64, 1, 1, 5, "memory-test");
  m->attn.max_kv_cache_size = 0;
  CpuBackendOptions o;
  o.threads = 1;
  o.memory_budget_bytes = budget;
  return MakeCpuBackend(std::move(m), o);
}

TEST(SchedulerMemory, CpuBackendResumesBitExact) {
  SchedulerOptions o;
  o.prefill_chunk = 16;
  auto solo = RunAll(Cpu(0), 6, 30, 70, o);
  // Each session: fixed state + one 64-row page per 64 tokens (+ chunk sums): 100 tokens
  // need two pages. A budget of three sessions with one page each forces preemptions.
  const size_t budget = 3 * Cpu(0)->SessionBytesFor(64);
  auto b = std::make_unique<UnderReserving>(Cpu(budget));
  UnderReserving* u = b.get();
  ExpectSame(solo, RunAll(std::move(b), 6, 30, 70, o, [u] { EXPECT_GT(u->exports, 0); }));
}

}  // namespace
}  // namespace rwkvx
