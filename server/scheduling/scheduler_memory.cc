// Scheduler: memory (docs/MEMORY.md). Admission against reservations (PlanAdmission),
// preemption of running requests that outgrow the backend (PlanBatch's victims: state
// exported to the host, session freed, resumed first and exactly where it stopped).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {

// The tokens a request's session may hold when it ends: what it holds now, its pending
// and prompt tokens, and max_tokens. Its reservation is SessionBytesFor of that.
WaitingRequest Scheduler::Reserve(const GenerateRequest& r) const {
  WaitingRequest w;
  size_t tokens = r.prompt.size() + static_cast<size_t>(std::max(0, r.max_tokens));
  if (!r.session_name.empty()) {
    if (const SessionStore::Stored* st = store_.Find(r.session_name)) {
      if (st->tier == SessionTier::kBackend) {
        const int layers = backend_->model().shape.n_attn_layer;
        tokens += st->pending.size() + (layers > 0 ? backend_->SessionKvTokens(st->sid) / layers : 0);
        w.held_bytes = backend_->SessionBytes(st->sid);
      } else {
        tokens += static_cast<size_t>(std::max(0LL, st->tokens_seen + st->pending_count));
      }
    }
  }
  w.reserve_bytes = backend_->SessionBytesFor(tokens);
  return w;
}

MemoryView Scheduler::MemoryNow(bool with_checkpoints) {
  MemoryInfo m = backend_->Memory();
  MemoryView v;
  v.capacity_bytes = m.capacity_bytes;
  v.used_bytes = m.used_bytes;
  if (m.capacity_bytes == 0) return v;  // no memory rule to apply
  std::vector<const Sequence*> seqs;
  for (Runner& r : Runners()) {
    r.seq->held_bytes = backend_->SessionBytes(r.sid);
    r.seq->step_bytes = backend_->StepBytes(r.sid, NextChunk(*r.seq, limits_.prefill_chunk));
    seqs.push_back(r.seq);
  }
  v.outstanding_bytes = OutstandingBytes(seqs);
  if (with_checkpoints) v.checkpoint_bytes = prefix_.EvictionOrderBytes();
  return v;
}

void Scheduler::Admit(absl::Time now) {
  const int running = static_cast<int>(active_.size());
  const size_t room = static_cast<size_t>(std::max(0, opts_.max_running - running));
  std::vector<WaitingRequest> waiting;
  for (const auto& p : preempted_) {
    // Back in, it holds what it held when preempted and grows by its next step at once.
    const Sequence& q = p->seq;
    waiting.push_back(WaitingRequest{std::max(q.reserved_bytes, q.held_bytes + q.step_bytes), 0});
  }
  const size_t parked = waiting.size();
  std::vector<std::shared_ptr<RequestStream>> queued;
  if (room > 0) {
    std::lock_guard<std::mutex> l(mu_);
    // A few past the free slots: requests refused for memory leave the queue too.
    for (size_t i = 0; i < std::min(room + 8, waiting_.size()); ++i) queued.push_back(waiting_[i]);
  }
  for (const auto& s : queued) waiting.push_back(Reserve(s->request()));
  if (waiting.empty()) return;
  SettleStep();  // admission weighs what the running sequences hold after the step in flight
  AdmissionPlan plan = PlanAdmission(limits_, running, waiting, MemoryNow(/*with_checkpoints=*/true));
  for (int i = 0; i < plan.evict_checkpoints; ++i) prefix_.EvictOne();  // cached prefixes yield
  const size_t take = static_cast<size_t>(plan.admit) + plan.refuse.size();
  for (size_t i = 0; i < std::min(take, parked); ++i) {
    if (!Resume()) return;  // the rest waits (Resume logged why)
  }
  if (take <= parked) return;
  std::vector<std::shared_ptr<RequestStream>> popped;
  {
    // Only this thread removes from waiting_: its head is still what was planned.
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = parked; i < take && !waiting_.empty(); ++i) {
      popped.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    waiting_count_.store(static_cast<int>(waiting_.size()));
    admitting_ += static_cast<int>(popped.size());  // WaitIdle must not see idle meanwhile
  }
  for (size_t j = 0; j < popped.size(); ++j) {
    const size_t i = parked + j;
    if (std::binary_search(plan.refuse.begin(), plan.refuse.end(), i)) {
      metrics_->Rejected("memory").Increment();
      EndUnstarted(popped[j], FinishReason::kError,
                   absl::ResourceExhaustedError(absl::StrCat(
                       "the request needs ", waiting[i].reserve_bytes,
                       " bytes of session memory, more than the server's capacity")),
                   metrics_);
    } else {
      StartActive(std::move(popped[j]), now, waiting[i].reserve_bytes);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      --admitting_;
    }
    idle_cv_.notify_all();
  }
}

void Scheduler::Preempt(ActiveRequest& a) {
  auto st = backend_->ExportSession(a.sid);
  if (!st.ok()) {
    SLOG(ERROR) << "request " << a.req.id << ": cannot preempt: " << st.status();
    Finish(a, FinishReason::kError, absl::InternalError("preemption failed"), {});
    return;
  }
  if (absl::Status fs = backend_->FreeSession(a.sid); !fs.ok()) SLOG(ERROR) << "FreeSession(" << a.sid << "): " << fs;
  SLOG(INFO) << "request " << a.req.id << " preempted after " << a.seq.fed << " tokens (memory)";
  metrics_->preemptions->Increment();
  a.sid = 0;
  a.parked = std::move(*st);
}

void Scheduler::ParkPreempted() {
  for (auto it = active_.begin(); it != active_.end();) {
    if (!(*it)->parked || (*it)->seq.done) {
      ++it;
      continue;
    }
    auto pos = std::upper_bound(preempted_.begin(), preempted_.end(), (*it)->order,
                                [](uint64_t o, const auto& p) { return o < p->order; });
    preempted_.insert(pos, std::move(*it));
    it = active_.erase(it);
  }
}

bool Scheduler::Resume() {
  ActiveRequest& a = *preempted_.front();
  auto sid = backend_->ImportSession(*a.parked);
  if (!sid.ok()) {
    SLOG(WARNING) << "request " << a.req.id << ": cannot resume yet: " << sid.status();
    return false;
  }
  a.sid = *sid;
  a.parked.reset();
  SLOG(INFO) << "request " << a.req.id << " resumed";
  auto pos = std::upper_bound(active_.begin(), active_.end(), a.order,
                              [](uint64_t o, const auto& p) { return o < p->order; });
  active_.insert(pos, std::move(preempted_.front()));
  preempted_.erase(preempted_.begin());
  return true;
}

void Scheduler::EndPreempted(bool (*ends)(const ActiveRequest&), FinishReason reason,
                             const absl::Status& why) {
  for (auto& a : preempted_) {
    if (!ends || ends(*a)) Finish(*a, reason, why, {});
  }
  preempted_.erase(std::remove_if(preempted_.begin(), preempted_.end(),
                                  [](auto& a) { return a->seq.done; }),
                   preempted_.end());
}

}  // namespace rwkvx
