// AppendControl: progress and cancellation of one session append (Service::AppendToSession
// with a control; docs/SESSIONS.md). The frontend that made the call creates it and holds
// it; the scheduler keeps a reference while the append's prefill runs.
//
// Threads: Cancel() and cancelled() from any thread. The progress callback runs on the
// scheduler's loop thread: once with fed = 0 when the session took the tokens (the total
// is known; not at all when the append fails first), then after each prefill chunk of
// the append. It must not block (post to the frontend's executor or wake a gRPC reactor).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

namespace rwkvx {

class AppendControl {
 public:
  // `fed`: tokens of this append fed to the session so far; `total`: tokens of the append.
  using ProgressFn = std::function<void(int64_t fed, int64_t total)>;

  explicit AppendControl(ProgressFn progress) : progress_(std::move(progress)) {}

  // The client went away: the append stops after the chunk that is running, and the
  // tokens of it not yet fed are dropped (the session ends at that chunk boundary).
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Loop thread only.
  void Progress(int64_t fed, int64_t total) const {
    if (progress_) progress_(fed, total);
  }

 private:
  const ProgressFn progress_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace rwkvx
