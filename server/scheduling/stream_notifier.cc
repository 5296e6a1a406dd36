#include "server/scheduling/stream_notifier.h"

#include <algorithm>
#include <utility>

#include "engine/thread_name.h"
#include "server/scheduling/stream_writer.h"

namespace rwkvx {

StreamNotifier::StreamNotifier() : thread_([this] {
  NameThisThread("rwkvx-notify");
  Run();
}) {}

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
  if (pending_.empty() && pending_jobs_.empty()) return;
  bool wake;
  {
    std::lock_guard<std::mutex> l(mu_);
    wake = queue_.empty() && jobs_.empty();
    if (queue_.empty()) {
      queue_.swap(pending_);
    } else {
      for (auto& s : pending_) queue_.push_back(std::move(s));
    }
    if (jobs_.empty()) {
      jobs_.swap(pending_jobs_);
    } else {
      for (auto& j : pending_jobs_) jobs_.push_back(std::move(j));
    }
  }
  pending_.clear();
  pending_jobs_.clear();
  if (wake) cv_.notify_one();
}

void StreamNotifier::Run() {
  std::vector<std::shared_ptr<RequestStream>> batch;
  std::vector<Work> jobs;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty() || !jobs_.empty(); });
      if (queue_.empty() && jobs_.empty()) return;  // stop_, nothing left
      batch.swap(queue_);
      jobs.swap(jobs_);
      busy_ = true;
    }
    for (Work& w : jobs) {
      if (w.job) {
        w.job();
      } else {
        w.writer->Token(std::move(w.token));
      }
    }
    jobs.clear();
    for (auto& s : batch) s->Notify();
    batch.clear();
    {
      std::lock_guard<std::mutex> l(mu_);
      busy_ = false;
    }
    drained_cv_.notify_all();
  }
}

bool StreamNotifier::WaitDrained(absl::Duration timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return drained_cv_.wait_for(l, absl::ToChronoNanoseconds(std::max(timeout, absl::ZeroDuration())),
                              [&] { return !busy_ && queue_.empty() && jobs_.empty(); });
}

}  // namespace rwkvx
