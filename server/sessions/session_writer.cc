#include "server/sessions/session_writer.h"

#include <utility>

#include "engine/snapshot.h"
#include "engine/thread_name.h"

namespace rwkvx {

SessionWriter::SessionWriter(SessionFiles* files, const Model* model)
    : files_(files), model_(model), thread_([this] {
        NameThisThread("rwkvx-sesswrite");
        Run();
      }) {}

SessionWriter::~SessionWriter() {
  Drain();
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SessionWriter::Submit(Job job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(std::move(job));
    ++in_flight_;
  }
  cv_.notify_all();
}

std::vector<SessionWriter::Done> SessionWriter::TakeDone() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Done> out;
  out.swap(done_);
  in_flight_ -= static_cast<int>(out.size());
  return out;
}

int SessionWriter::InFlight() const {
  std::lock_guard<std::mutex> l(mu_);
  return in_flight_;
}

void SessionWriter::Drain() {
  std::unique_lock<std::mutex> l(mu_);
  idle_cv_.wait(l, [this] { return queue_.empty() && !busy_; });
}

void SessionWriter::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ with nothing left
    Job job = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    l.unlock();
    Done d;
    d.name = job.name;
    d.id = job.id;
    std::shared_ptr<const std::string> bytes = std::move(job.bytes);
    absl::Status w;
    if (!bytes) {
      bytes = std::make_shared<const std::string>(SerializeSnapshot(*model_, *job.state, &job.pending, &job.owner));
    } else {  // host-tier bytes: the owner goes into a copy (the tier keeps serving its own)
      auto stamped = StampSnapshot(*bytes, job.owner);
      if (stamped.ok()) bytes = std::make_shared<const std::string>(std::move(*stamped));
      w = stamped.status();
    }
    job.state.reset();  // free the exported state before the (slow) write
    if (w.ok()) w = files_->Write(job.name, *bytes, job.fence);
    if (w.ok())
      d.written = bytes->size();
    else
      d.written = w;
    bytes.reset();
    l.lock();
    done_.push_back(std::move(d));
    busy_ = false;
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace rwkvx
