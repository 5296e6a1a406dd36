// Test fixture for the Service unit tests: a Service over a started Scheduler over the
// fake backend (server/testing/fake_backend.h), with a byte tokenizer that records the
// threads Encode ran on, and a bounded wait for the Service's async callbacks.
// One test thread drives it; the scheduler's loop thread runs the callbacks.
#pragma once

#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/service/service.h"
#include "server/testing/fake_backend.h"

namespace rwkvx::testing {

// The byte tokenizer, noting which threads call Encode.
class ThreadNotingTokenizer : public Tokenizer {
 public:
  std::string Name() const override { return inner_->Name(); }
  std::vector<int32_t> Encode(std::string_view bytes) const override {
    {
      std::lock_guard<std::mutex> l(mu_);
      encode_threads_.insert(std::this_thread::get_id());
    }
    return inner_->Encode(bytes);
  }
  std::string DecodeBytes(const std::vector<int32_t>& ids) const override { return inner_->DecodeBytes(ids); }
  std::string_view TokenBytes(int32_t id) const override { return inner_->TokenBytes(id); }
  bool IsKnown(int32_t id) const override { return inner_->IsKnown(id); }
  int VocabSize() const override { return inner_->VocabSize(); }
  std::set<std::thread::id> encode_threads() const {
    std::lock_guard<std::mutex> l(mu_);
    return encode_threads_;
  }

 private:
  std::unique_ptr<Tokenizer> inner_ = MakeByteTokenizer();
  mutable std::mutex mu_;
  mutable std::set<std::thread::id> encode_threads_;
};

struct ServiceEnv {
  explicit ServiceEnv(SchedulerOptions opts = {}) {
    auto fake = std::make_unique<FakeBackend>();
    backend = fake.get();
    sched = std::make_unique<Scheduler>(std::move(fake), &tok, opts, &metrics);
    sched->Start();
    ModelDescription d;
    d.id = "m";
    d.vocab = 257;
    ServiceLimits lim;
    lim.max_tokens = 100;
    lim.max_prompt_tokens = 50;
    svc = std::make_unique<Service>(sched.get(), &tok, d, lim);
  }
  ~ServiceEnv() { sched->Stop(); }
  ThreadNotingTokenizer tok;
  ServerMetrics metrics;
  FakeBackend* backend = nullptr;  // owned by the scheduler
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<Service> svc;
};

// Calls `start(callback)` and returns what the callback got (bounded wait: a callback
// that never comes fails the test instead of hanging it).
template <typename T, typename Start>
T Await(Start start) {
  auto p = std::make_shared<std::promise<T>>();
  auto f = p->get_future();
  start([p](T v) { p->set_value(std::move(v)); });
  if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "the callback never came";
    std::abort();
  }
  return f.get();
}

inline GenerateParams GreedyParams(std::string prompt, int64_t max_tokens) {
  GenerateParams p;
  p.prompt.text = std::move(prompt);
  p.max_tokens = max_tokens;
  p.temperature = 0;
  return p;
}

}  // namespace rwkvx::testing
