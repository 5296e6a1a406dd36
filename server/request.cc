#include "server/request.h"

#include "server/errors.h"

namespace rwkvx {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kTimeout: return "timeout";
    case FinishReason::kShutdown: return "shutdown";
    case FinishReason::kSlowClient: return "slow_client";
    case FinishReason::kError: return "error";
  }
  return "error";
}

namespace {
size_t EventBytes(const GenerateEvent& ev) {
  size_t n = 64 + ev.text.size();
  for (const auto& t : ev.tokens) n += sizeof(TokenEvent) + t.top.size() * sizeof(TokenLogprob);
  return n;
}
}  // namespace

void RequestStream::SetNotify(std::function<void()> fn) {
  bool pending;
  {
    std::lock_guard<std::mutex> l(mu_);
    notify_ = std::move(fn);
    pending = !events_.empty();
  }
  if (pending) Notify();
}

void RequestStream::Notify() {
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> l(mu_);
    fn = notify_;
  }
  if (fn) fn();
}

bool RequestStream::PopAll(std::vector<GenerateEvent>* out) {
  std::lock_guard<std::mutex> l(mu_);
  if (events_.empty()) return false;
  for (auto& e : events_) out->push_back(std::move(e));
  events_.clear();
  buffered_bytes_ = 0;
  return true;
}

bool RequestStream::Push(GenerateEvent ev, bool* notify_later) {
  bool drained;
  {
    std::lock_guard<std::mutex> l(mu_);
    size_t n = EventBytes(ev);
    if (buffered_bytes_ + n > max_buffered_bytes_ && !events_.empty()) return false;
    drained = events_.empty();
    buffered_bytes_ += n;
    events_.push_back(std::move(ev));
  }
  if (notify_later) {
    *notify_later = drained;
  } else {
    Notify();
  }
  return true;
}

void RequestStream::PushFinal(GenerateEvent ev) {
  ev.final = true;
  ev.status = Unshared(ev.status);  // the reader's thread owns its own rep
  {
    std::lock_guard<std::mutex> l(mu_);
    buffered_bytes_ += EventBytes(ev);
    events_.push_back(std::move(ev));
    finished_.store(true, std::memory_order_release);
  }
  Notify();
}

}  // namespace rwkvx
