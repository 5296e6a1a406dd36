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
  std::string text;
  GenerateEvent final_event;
  bool finished = false;
};

class StreamCollector {
 public:
  explicit StreamCollector(std::shared_ptr<RequestStream> s) : s_(std::move(s)) {
    s_->SetNotify([this] {
      std::lock_guard<std::mutex> l(mu_);
      cv_.notify_all();
    });
  }
  ~StreamCollector() { s_->SetNotify(nullptr); }
  // Waits (at most `timeout_s`) until at least `n` tokens arrived or the stream finished.
  Collected& WaitTokens(size_t n, double timeout_s = 30) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::duration<double>(timeout_s), [&] {
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
      for (auto& t : e.tokens) c_.tokens.push_back(t.token);
      c_.text += e.text;
      if (e.final) {
        c_.finished = true;
        c_.final_event = e;
      }
    }
  }
  std::shared_ptr<RequestStream> s_;
  std::mutex mu_;
  std::condition_variable cv_;
  Collected c_;
};

}  // namespace rwkvx::testing
