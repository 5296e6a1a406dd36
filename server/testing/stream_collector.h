// Test helper: collects a RequestStream's events until the final one (bounded wait).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/request.h"

namespace rwkvx::testing {

struct Collected {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // TokenEvent::logprob per token (0 unless requested)
  std::string text;
  GenerateEvent final_event;
  bool finished = false;
};

class StreamCollector {
 public:
  // The callback may still be running on the scheduler thread after SetNotify(nullptr)
  // returns (RequestStream calls it outside its lock), so it owns what it touches.
  explicit StreamCollector(std::shared_ptr<RequestStream> s)
      : s_(std::move(s)), sync_(std::make_shared<Sync>()) {
    s_->SetNotify([sync = sync_] {
      std::lock_guard<std::mutex> l(sync->mu);
      sync->cv.notify_all();
    });
  }
  ~StreamCollector() { s_->SetNotify(nullptr); }
  // Waits (at most `timeout_s`) until at least `n` tokens arrived or the stream finished.
  Collected& WaitTokens(size_t n, double timeout_s = 30) {
    std::unique_lock<std::mutex> l(sync_->mu);
    sync_->cv.wait_for(l, std::chrono::duration<double>(timeout_s), [&] {
      Drain();
      return c_.finished || c_.tokens.size() >= n;
    });
    return c_;
  }
  Collected& WaitFinal(double timeout_s = 30) { return WaitTokens(SIZE_MAX, timeout_s); }

 private:
  void Drain() {
    std::vector<GenerateEvent> evs;
    s_->PopAll(&evs);
    for (auto& e : evs) {
      for (auto& t : e.tokens) {
        c_.tokens.push_back(t.token);
        c_.logprobs.push_back(t.logprob);
      }
      c_.text += e.text;
      if (e.final) {
        c_.finished = true;
        c_.final_event = e;
      }
    }
  }
  struct Sync {
    std::mutex mu;
    std::condition_variable cv;
  };
  std::shared_ptr<RequestStream> s_;
  std::shared_ptr<Sync> sync_;
  Collected c_;
};

}  // namespace rwkvx::testing
