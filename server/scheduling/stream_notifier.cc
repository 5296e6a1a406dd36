#include "server/scheduling/stream_notifier.h"

#include <utility>

namespace rwkvx {

StreamNotifier::StreamNotifier() : thread_([this] { Run(); }) {}

StreamNotifier::~StreamNotifier() {
  Flush();
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void StreamNotifier::Flush() {
  if (pending_.empty()) return;
  bool wake;
  {
    std::lock_guard<std::mutex> l(mu_);
    wake = queue_.empty();
    if (wake) {
      queue_.swap(pending_);
    } else {
      for (auto& s : pending_) queue_.push_back(std::move(s));
    }
  }
  pending_.clear();
  if (wake) cv_.notify_one();
}

void StreamNotifier::Run() {
  std::vector<std::shared_ptr<RequestStream>> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_, nothing left
      batch.swap(queue_);
    }
    for (auto& s : batch) s->Notify();
    batch.clear();
  }
}

}  // namespace rwkvx
