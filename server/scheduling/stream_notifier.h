// StreamNotifier: wakes the readers of request streams from a thread of its own, so that
// the scheduler thread does not pay for a wake-up per token. During a step's results the
// scheduler queues each stream whose reader must be told (Add: a reader that had drained
// every earlier event); Flush hands the step's list to the notifier thread in one go, which
// calls RequestStream::Notify on each (the frontend's callback: an asio post, a gRPC pump)
// while the scheduler goes on with the next step. Post queues work for that thread (the
// StreamWriters of requests without stop strings: detokenizing and pushing their events),
// run in posting order.
// Threads: Add, Post and Flush from the scheduler thread only, WaitDrained from any; the notifier thread owns what
// Flush handed over. The destructor notifies what is still queued, then joins.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "server/request.h"

namespace rwkvx {

class StreamWriter;

class StreamNotifier {
 public:
  StreamNotifier();
  ~StreamNotifier();
  StreamNotifier(const StreamNotifier&) = delete;
  StreamNotifier& operator=(const StreamNotifier&) = delete;

  void Add(std::shared_ptr<RequestStream> s) { pending_.push_back(std::move(s)); }
  // Work for the notifier thread (a StreamWriter's decoding and pushes), run in posting
  // order before that flush's wake-ups.
  void Post(std::function<void()> job) { pending_jobs_.push_back(Work{std::move(job), nullptr, {}}); }
  // The common job, one generated token for a StreamWriter (StreamWriter::Token), queued
  // without a heap allocation of its own.
  void PostToken(std::shared_ptr<StreamWriter> w, TokenEvent t) {
    pending_jobs_.push_back(Work{nullptr, std::move(w), std::move(t)});
  }
  void Flush();
  // Waits (from any thread) until everything flushed so far has run. False on timeout.
  bool WaitDrained(absl::Duration timeout);

 private:
  // A job, or (no job) a token for `writer`.
  struct Work {
    std::function<void()> job;
    std::shared_ptr<StreamWriter> writer;
    TokenEvent token;
  };
  void Run();

  std::vector<std::shared_ptr<RequestStream>> pending_;  // scheduler thread
  std::vector<Work> pending_jobs_;                       // scheduler thread
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<RequestStream>> queue_;  // guarded by mu_
  std::vector<Work> jobs_;                             // guarded by mu_
  bool stop_ = false;                                  // guarded by mu_
  bool busy_ = false;                                  // guarded by mu_: a batch is running
  std::condition_variable drained_cv_;
  std::thread thread_;
};

}  // namespace rwkvx
