// Scheduler: the loop thread. Each iteration runs posted commands, ends what must end,
// admits (PlanAdmission), and runs one step (scheduler_step.cc).
#include "server/scheduling/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/thread_name.h"
#include "server/log.h"

namespace rwkvx {
namespace {

SessionStoreOptions StoreOptions(const SchedulerOptions& o) {
  SessionStoreOptions so;
  so.max_stored_sessions = o.max_stored_sessions;
  so.backend_budget_bytes = o.stored_session_budget_bytes;
  so.host_budget_bytes = o.session_host_budget_bytes;
  so.disk_budget_bytes = o.session_disk_budget_bytes;
  so.idle_timeout = o.stored_session_idle_timeout;
  so.max_snapshot_bytes = o.max_snapshot_bytes;
  so.lease_time = o.session_lease_time;
  return so;
}

}  // namespace

Scheduler::Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer,
                     SchedulerOptions opts, ServerMetrics* metrics, SchedulerTestingOptions testing)
    : backend_(std::move(backend)),
      tokenizer_(tokenizer),
      opts_(opts),
      testing_(std::move(testing)),
      limits_{opts.max_running, opts.max_batch_tokens, opts.prefill_chunk, std::max(1, opts.prefill_interval)},
      metrics_(metrics),
      store_(backend_.get(), StoreOptions(opts), metrics),
      prefix_(backend_.get(), opts.prefix_cache_bytes, opts.prefix_cache_min_tokens,
              opts.prefill_chunk, metrics) {
  // Ids the model can score but the tokenizer cannot spell (the world vocabulary ends at
  // 65529, models have 65536 logits): never sampled (docs/SAMPLING.md).
  for (int32_t id = 1; id < backend_->model().shape.vocab; ++id)
    if (!tokenizer_->IsKnown(id)) unspellable_.push_back(id);
  capacity_ = backend_->Memory().capacity_bytes;
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::OpenSessionDir() {
  if (opts_.session_dir.empty()) return absl::OkStatus();
  SessionFilesOptions fo;
  fo.dir = opts_.session_dir;
  fo.testing_write_pause_ms = testing_.session_write_pause_ms;
  fo.testing_write_gate = testing_.session_write_gate;
  fo.testing_replica_host = testing_.replica_host;
  return store_.OpenDir(std::move(fo));
}

void Scheduler::Start() {
  last_expiry_check_ = absl::Now();
  thread_ = std::thread([this] {
    NameThisThread("rwkvx-sched");
    Loop();
  });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status Scheduler::Submit(std::shared_ptr<RequestStream> stream) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ || draining_.load()) {
      metrics_->Rejected("draining").Increment();
      return absl::UnavailableError("the server is shutting down and admits no new requests");
    }
    const GenerateRequest& r = stream->request();
    if (capacity_ > 0 && r.session_name.empty()) {
      // Never fits: refused before any byte is streamed (SessionBytesFor is pure).
      const size_t need = backend_->SessionBytesFor(r.prompt.size() + static_cast<size_t>(std::max(0, r.max_tokens)));
      if (need > capacity_) {
        metrics_->Rejected("memory").Increment();
        return absl::ResourceExhaustedError(absl::StrCat(
            "the request needs ", need, " bytes of session memory, more than the server's ", capacity_,
            "; shorten the prompt or max_tokens"));
      }
    }
    if (static_cast<int>(waiting_.size()) >= opts_.max_queued) {
      metrics_->Rejected("queue_full").Increment();
      return absl::ResourceExhaustedError("too many requests are waiting; retry later");
    }
    waiting_.push_back(std::move(stream));
    waiting_count_.store(static_cast<int>(waiting_.size()));
  }
  metrics_->requests_waiting->Set(waiting_count_.load());
  cv_.notify_all();
  return absl::OkStatus();
}

void Scheduler::BeginDrain(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> l(mu_);
    draining_.store(true);
    drain_deadline_ = absl::Now() + grace;
  }
  metrics_->ready->Set(0);
  cv_.notify_all();
}

bool Scheduler::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (!idle_cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] {
          return running_count_.load() == 0 && waiting_.empty() && admitting_ == 0;
        }))
      return false;
  }
  // Idle, and every event pushed (the StreamWriters' work runs on the notifier's thread;
  // the loop flushed it before saying it was idle).
  return notifier_.WaitDrained(deadline - absl::Now());
}

bool Scheduler::Post(std::function<void()> cmd) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return false;
    commands_.push_back(std::move(cmd));
  }
  cv_.notify_all();
  return true;
}

void Scheduler::Loop() {
  for (;;) {
    std::deque<std::function<void()>> cmds;
    bool stopping = false;
    absl::Time drain_deadline;
    {
      std::unique_lock<std::mutex> l(mu_);
      auto has_work = [&] {
        return stop_ || !commands_.empty() || !active_.empty() || !prefills_.empty() ||
               !waiting_.empty() || !preempted_.empty();
      };
      if (!has_work()) cv_.wait_for(l, std::chrono::seconds(1), has_work);
      cmds.swap(commands_);
      stopping = stop_;
      drain_deadline = drain_deadline_;
    }
    const absl::Time busy0 = absl::Now();  // rwkvx_scheduler_seconds_total: other = busy - step
    const double cpu0 = ThreadCpuSeconds();
    step_busy_s_ = 0;
    step_cpu_s_ = 0;
    if (!cmds.empty() || stopping) SettleStep();  // (a step may be in flight: --overlap-steps)
    RunCommands(&cmds);
    if (stopping) break;
    absl::Time now = absl::Now();
    if (now >= drain_deadline) {
      const absl::Status why = absl::UnavailableError("the server shut down before the request finished");
      for (auto& a : active_) Finish(*a, FinishReason::kShutdown, why, {});
      EndPreempted(nullptr, FinishReason::kShutdown, why);
      EndAllWaiting(FinishReason::kShutdown,
                    absl::UnavailableError("the server shut down before the request started"));
    }
    store_.FinishBackgroundSaves(now);
    store_.RenewLeases(now);
    CheckEndings(now);
    if (fatal_.load()) EndPrefills(absl::UnavailableError("the server lost its compute backend"));
    else Admit(now);
    if (now - last_expiry_check_ >= absl::Seconds(1)) {
      store_.ExpireIdle(now);
      last_expiry_check_ = now;
    }
    if (!fatal_.load() && (!active_.empty() || !prefills_.empty())) RunStep();
    // The last step's stream readers wake while the next step runs (or is planned).
    notifier_.Flush();
    active_.erase(std::remove_if(active_.begin(), active_.end(),
                                 [](auto& a) { return a->seq.done; }),
                  active_.end());
    prefills_.erase(std::remove_if(prefills_.begin(), prefills_.end(),
                                   [](auto& p) { return p->seq.done; }),
                    prefills_.end());
    ParkPreempted();
    running_count_.store(static_cast<int>(active_.size() + preempted_.size()));
    // Gauges walk every running session: at most every 20 ms while busy, but at once when
    // the counts change (a request admitted, finished or preempted, a stored session
    // added or dropped: a scrape after a stream's first events sees it running), and
    // always once the loop has nothing left to run (a scrape after the work sees the final
    // figures).
    const bool settled = active_.empty() && prefills_.empty() && preempted_.empty();
    const GaugeCounts counts{active_.size(), preempted_.size(), prefills_.size(), store_.size(),
                             static_cast<size_t>(waiting_count_.load())};
    if (settled || now - last_gauges_ >= absl::Milliseconds(20)) {
      UpdateGauges();
      last_gauges_ = now;
    } else if (counts != last_gauge_counts_) {
      UpdateCountGauges();  // the counts alone: no backend call per session
    }
    last_gauge_counts_ = counts;
    metrics_->sched_other_seconds->Increment(std::max(0.0, absl::ToDoubleSeconds(absl::Now() - busy0) - step_busy_s_));
    metrics_->sched_cpu_seconds[3]->Increment(std::max(0.0, ThreadCpuSeconds() - cpu0 - step_cpu_s_));
    {
      std::lock_guard<std::mutex> l(mu_);
      if (active_.empty() && preempted_.empty() && waiting_.empty()) idle_cv_.notify_all();
    }
  }
  // Shutdown: end everything, free every session.
  SettleStep();
  const absl::Status down = absl::UnavailableError("the server shut down");
  for (auto& a : active_) Finish(*a, FinishReason::kShutdown, down, {});
  active_.clear();
  EndPreempted(nullptr, FinishReason::kShutdown, down);
  std::deque<std::function<void()>> cmds;
  {
    std::lock_guard<std::mutex> l(mu_);
    cmds.swap(commands_);
  }
  EndAllWaiting(FinishReason::kShutdown, down);
  RunCommands(&cmds);
  EndPrefills(absl::UnavailableError("the server is shutting down"));
  notifier_.Flush();  // the StreamWriters' final events
  store_.Shutdown();
  running_count_.store(0);
  UpdateGauges();
  {
    std::lock_guard<std::mutex> l(mu_);
    idle_cv_.notify_all();
  }
}

void Scheduler::RunCommands(std::deque<std::function<void()>>* cmds) {
  for (auto& c : *cmds) c();
  cmds->clear();
}

void Scheduler::EndAllWaiting(FinishReason reason, const absl::Status& why) {
  std::deque<std::shared_ptr<RequestStream>> w;
  {
    std::lock_guard<std::mutex> l(mu_);
    w.swap(waiting_);
    waiting_count_.store(0);
  }
  for (auto& s : w) EndUnstarted(s, reason, why, metrics_);
}

void Scheduler::CheckEndings(absl::Time now) {
  for (auto& a : active_) {
    if (a->seq.done) continue;
    if (a->stream->cancelled()) {
      Finish(*a, FinishReason::kCancelled, absl::CancelledError("the client went away"), {});
    } else if (a->WriterSlow()) {  // its StreamWriter could not push (ActiveRequest::Emit's sync case)
      Finish(*a, FinishReason::kSlowClient, absl::ResourceExhaustedError("the client read the stream too slowly"), {});
    } else if (now >= a->req.deadline) {
      Finish(*a, FinishReason::kTimeout,
             absl::DeadlineExceededError("the request ran past its deadline"), {});
    }
  }
  EndPreempted([](const ActiveRequest& a) { return a.stream->cancelled(); }, FinishReason::kCancelled,
               absl::CancelledError("the client went away"));
  EndPreempted([](const ActiveRequest& a) { return absl::Now() >= a.req.deadline; }, FinishReason::kTimeout,
               absl::DeadlineExceededError("the request ran past its deadline"));
  std::vector<std::pair<std::shared_ptr<RequestStream>, FinishReason>> ended;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->cancelled()) {
        ended.emplace_back(*it, FinishReason::kCancelled);
      } else if (now >= (*it)->request().deadline) {
        ended.emplace_back(*it, FinishReason::kTimeout);
      } else {
        ++it;
        continue;
      }
      it = waiting_.erase(it);
    }
    waiting_count_.store(static_cast<int>(waiting_.size()));
  }
  for (auto& [s, r] : ended) {
    EndUnstarted(s, r,
                 r == FinishReason::kCancelled
                     ? absl::CancelledError("the client went away")
                     : absl::DeadlineExceededError("the request waited past its deadline"),
                 metrics_);
  }
}

bool Scheduler::StartActive(std::shared_ptr<RequestStream> s, absl::Time now, size_t reserve_bytes) {
  const GenerateRequest& req = s->request();
  auto a = std::make_unique<ActiveRequest>(s, tokenizer_, opts_.stream_writer ? &notifier_ : nullptr);
  if (!req.session_name.empty()) {
    auto sid = store_.Acquire(req.session_name, !req.prompt.empty(), &a->seq.feed);
    if (!sid.ok()) {  // missing, busy, or cannot be loaded
      EndUnstarted(s, FinishReason::kError, sid.status(), metrics_);
      return false;
    }
    a->sid = *sid;
    a->stored_name = req.session_name;
    a->seq.kind = SequenceKind::kSessionRequest;
  } else {
    auto started = prefix_.NewSession(req.prompt, req.initial_space, req.initial_state.get());
    if (!started.ok()) {
      SLOG(WARNING) << "request " << req.id << ": cannot create a session: " << started.status();
      EndUnstarted(s, FinishReason::kError,
                   absl::ResourceExhaustedError("no session memory available; retry later"),
                   metrics_);
      return false;
    }
    a->sid = started->sid;
    a->cache_start = started->start;
    a->cache_shared = started->shared;
    a->cached_logits = std::move(started->logits);
    a->seq.kind = SequenceKind::kRequest;
  }
  a->seq.feed.insert(a->seq.feed.end(), req.prompt.begin(), req.prompt.end());
  a->seq.prompt_len = a->seq.feed.size();
  a->seq.fed = a->cache_start;
  a->seq.reserved_bytes = reserve_bytes;
  a->order = next_order_++;
  a->admitted = now;
  metrics_->queue_time->Observe(absl::ToDoubleSeconds(now - req.arrival));
  if (!a->cached_logits.empty()) HandleToken(*a, a->cached_logits.data(), now);  // all cached
  active_.push_back(std::move(a));
  running_count_.store(static_cast<int>(active_.size()));
  return true;
}

void Scheduler::Finish(ActiveRequest& a, FinishReason reason, absl::Status status,
                       GenerateEvent ev, bool flush) {
  SettleStep();  // a request in the step in flight ends after its results
  PublishDeferred();  // (its final event after its tokens)
  if (a.seq.done) return;
  absl::Time now = absl::Now();
  if (!a.stored_name.empty()) {
    store_.Release(a.stored_name,
                   std::vector<int32_t>(a.seq.feed.begin() + static_cast<std::ptrdiff_t>(a.seq.fed),
                                        a.seq.feed.end()),
                   a.seq.fed, now);
  } else if (a.sid != 0 && !prefix_.CheckpointAtFinish(a.seq.feed, a.seq.fed, a.sid, reason, a.req.initial_space)) {
    absl::Status fs = backend_->FreeSession(a.sid);
    if (!fs.ok()) SLOG(ERROR) << "FreeSession(" << a.sid << "): " << fs;
  }
  a.sid = 0;
  a.End(Ending{reason, std::move(status), std::move(ev), flush}, now, metrics_);
}

void Scheduler::UpdateCountGauges() {
  int live = static_cast<int>(store_.size());
  int running = 0;
  for (const auto& a : active_) {
    if (a->seq.done) continue;
    ++running;
    live += a->stored_name.empty() && a->sid != 0;
  }
  metrics_->requests_running->Set(running + static_cast<int>(preempted_.size()));
  metrics_->requests_waiting->Set(waiting_count_.load());
  metrics_->sessions_active->Set(live);
  metrics_->sessions_stored->Set(static_cast<double>(store_.size()));
}

void Scheduler::UpdateGauges() {
  UpdateCountGauges();
  size_t bytes = 0, kv = 0;
  for (const auto& a : active_) {
    if (a->seq.done || !a->stored_name.empty() || a->sid == 0) continue;
    bytes += backend_->SessionBytes(a->sid);
    kv += backend_->SessionKvTokens(a->sid);
  }
  store_.AddBackendUsage(&bytes, &kv);
  metrics_->session_state_bytes->Set(static_cast<double>(bytes));
  metrics_->sparse_kv_tokens->Set(static_cast<double>(kv));
  const DeviceUsage u = backend_->Usage();
  metrics_->backend_device_bytes->Set(static_cast<double>(u.device_bytes));
  metrics_->backend_graphs->Set(u.graphs);
}

}  // namespace rwkvx
