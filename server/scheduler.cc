#include "server/scheduler.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "server/log.h"
#include "engine/sampler.h"
#include "server/stop_text.h"

namespace rwkvx {

struct Scheduler::Active {
  Active(std::shared_ptr<RequestStream> s, const Tokenizer* tok)
      : stream(std::move(s)),
        req(stream->request()),
        sampler(req.sampling, tok),
        decoder(tok),
        stop(req.stop_strings) {}
  std::shared_ptr<RequestStream> stream;
  const GenerateRequest& req;
  SessionId sid = 0;
  std::string stored_name;  // "" for a session that lives only for this request
  std::vector<int32_t> feed;  // tokens to feed: (pending +) prompt, then each sampled token
  size_t fed = 0;
  size_t prompt_len = 0;
  size_t cache_start = 0;            // prompt tokens that came from the prefix cache
  size_t cache_shared = 0;           // prompt tokens shared with a cached key
  std::vector<float> cached_logits;  // the whole prompt was cached: logits after it
  int generated = 0;
  Sampler sampler;
  StreamDecoder decoder;
  StopTextMatcher stop;
  absl::Time admitted, last_token;
  bool done = false;
};

Scheduler::Scheduler(std::unique_ptr<Backend> backend, const Tokenizer* tokenizer,
                     SchedulerOptions opts, ServerMetrics* metrics)
    : backend_(std::move(backend)), tokenizer_(tokenizer), opts_(opts), metrics_(metrics) {
  // Ids the model can score but the tokenizer cannot spell (the world vocabulary ends at
  // 65529, models have 65536 logits): never sampled (docs/SAMPLING.md).
  for (int32_t id = 1; id < backend_->model().shape.vocab; ++id)
    if (!tokenizer_->IsKnown(id)) unspellable_.push_back(id);
  MakePrefixCache();
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  last_expiry_check_ = absl::Now();
  thread_ = std::thread([this] { Loop(); });
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
  std::unique_lock<std::mutex> l(mu_);
  return idle_cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] {
    return running_count_.load() == 0 && waiting_.empty() && admitting_ == 0;
  });
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
        return stop_ || !commands_.empty() || !active_.empty() || !waiting_.empty();
      };
      if (!has_work()) cv_.wait_for(l, std::chrono::seconds(1), has_work);
      cmds.swap(commands_);
      stopping = stop_;
      drain_deadline = drain_deadline_;
    }
    RunCommands(&cmds);
    if (stopping) break;
    absl::Time now = absl::Now();
    if (now >= drain_deadline) {
      for (auto& a : active_) {
        Finish(*a, FinishReason::kShutdown,
               absl::UnavailableError("the server shut down before the request finished"), {});
      }
      std::deque<std::shared_ptr<RequestStream>> w;
      {
        std::lock_guard<std::mutex> l(mu_);
        w.swap(waiting_);
        waiting_count_.store(0);
      }
      for (auto& s : w) {
        FinishWaiting(s, FinishReason::kShutdown,
                      absl::UnavailableError("the server shut down before the request started"));
      }
    }
    FinishBackgroundSaves(now);
    CheckEndings(now);
    Admit(now);
    if (now - last_expiry_check_ >= absl::Seconds(1)) {
      ExpireStored(now);
      last_expiry_check_ = now;
    }
    if (!active_.empty()) RunStep();
    active_.erase(std::remove_if(active_.begin(), active_.end(), [](auto& a) { return a->done; }),
                  active_.end());
    running_count_.store(static_cast<int>(active_.size()));
    UpdateGauges();
    {
      std::lock_guard<std::mutex> l(mu_);
      if (active_.empty() && waiting_.empty()) idle_cv_.notify_all();
    }
  }
  // Shutdown: end everything, free every session.
  for (auto& a : active_) {
    Finish(*a, FinishReason::kShutdown, absl::UnavailableError("the server shut down"), {});
  }
  active_.clear();
  std::deque<std::shared_ptr<RequestStream>> w;
  std::deque<std::function<void()>> cmds;
  {
    std::lock_guard<std::mutex> l(mu_);
    w.swap(waiting_);
    waiting_count_.store(0);
    cmds.swap(commands_);
  }
  for (auto& s : w) {
    FinishWaiting(s, FinishReason::kShutdown, absl::UnavailableError("the server shut down"));
  }
  RunCommands(&cmds);
  if (writer_) {  // background saves first: SaveAllStored must not write a name they write
    writer_->Drain();
    FinishBackgroundSaves(absl::Now());
  }
  SaveAllStored();  // --session-dir: every live stored session survives the restart
  while (!stored_.empty()) DropStored(stored_.begin(), /*remove_file=*/false);
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

void Scheduler::FinishWaiting(const std::shared_ptr<RequestStream>& s, FinishReason reason,
                              absl::Status status) {
  GenerateEvent ev;
  ev.finish = reason;
  ev.status = std::move(status);
  ev.prompt_tokens = static_cast<int>(s->request().prompt.size());
  metrics_->Finished(FinishReasonName(reason)).Increment();
  metrics_->request_latency->Observe(absl::ToDoubleSeconds(absl::Now() - s->request().arrival));
  s->PushFinal(std::move(ev));
}

void Scheduler::CheckEndings(absl::Time now) {
  for (auto& a : active_) {
    if (a->done) continue;
    if (a->stream->cancelled()) {
      Finish(*a, FinishReason::kCancelled, absl::CancelledError("the client went away"), {});
    } else if (now >= a->req.deadline) {
      Finish(*a, FinishReason::kTimeout,
             absl::DeadlineExceededError("the request ran past its deadline"), {});
    }
  }
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
    FinishWaiting(s, r,
                  r == FinishReason::kCancelled
                      ? absl::CancelledError("the client went away")
                      : absl::DeadlineExceededError("the request waited past its deadline"));
  }
}

void Scheduler::Admit(absl::Time now) {
  for (;;) {
    if (static_cast<int>(active_.size()) >= opts_.max_running) return;
    if (!active_.empty()) {
      MemoryInfo m = backend_->Memory();
      if (m.capacity_bytes > 0 && m.used_bytes + backend_->MaxSessionBytes() > m.capacity_bytes) {
        if (EvictPrefixCheckpoint()) continue;  // cached prefixes yield to requests
        return;
      }
    }
    std::shared_ptr<RequestStream> s;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (waiting_.empty()) return;
      s = std::move(waiting_.front());
      waiting_.pop_front();
      waiting_count_.store(static_cast<int>(waiting_.size()));
      ++admitting_;  // not waiting, not yet counted as running: WaitIdle must not see idle
    }
    StartActive(std::move(s), now);
    {
      std::lock_guard<std::mutex> l(mu_);
      --admitting_;
    }
    idle_cv_.notify_all();
  }
}

bool Scheduler::StartActive(std::shared_ptr<RequestStream> s, absl::Time now) {
  const GenerateRequest& req = s->request();
  auto a = std::make_unique<Active>(s, tokenizer_);
  if (!req.session_name.empty()) {
    auto it = stored_.find(req.session_name);
    if (it == stored_.end()) {
      FinishWaiting(s, FinishReason::kError,
                    absl::NotFoundError("no session named '" + req.session_name + "'"));
      return false;
    }
    if (absl::Status us = UseStored(req.session_name, it->second, req); !us.ok()) {
      FinishWaiting(s, FinishReason::kError, us);  // busy, or cannot be loaded
      return false;
    }
    it->second.busy = true;
    ++it->second.version;  // a background save of the state before this must not move it to disk
    a->sid = it->second.sid;
    a->stored_name = req.session_name;
    a->feed = std::move(it->second.pending);
    it->second.pending.clear();
  } else {
    auto sid = NewSession(req.prompt, &a->cache_start, &a->cache_shared, &a->cached_logits);
    if (!sid.ok()) {
      SLOG(WARNING) << "request " << req.id << ": cannot create a session: " << sid.status();
      FinishWaiting(s, FinishReason::kError,
                    absl::ResourceExhaustedError("no session memory available; retry later"));
      return false;
    }
    a->sid = *sid;
  }
  a->feed.insert(a->feed.end(), req.prompt.begin(), req.prompt.end());
  a->prompt_len = a->feed.size();
  a->fed = a->cache_start;
  a->admitted = now;
  metrics_->queue_time->Observe(absl::ToDoubleSeconds(now - req.arrival));
  if (!a->cached_logits.empty()) HandleToken(*a, a->cached_logits.data(), now);  // all cached
  active_.push_back(std::move(a));
  running_count_.store(static_cast<int>(active_.size()));
  return true;
}

bool Scheduler::RunStep() {
  std::vector<StepInput> items;
  std::vector<Active*> owners;
  int budget = opts_.max_batch_tokens;
  // Decoding sessions (one token left to feed) first, so running streams keep flowing.
  for (auto& a : active_) {
    if (a->done || a->feed.size() - a->fed != 1) continue;
    StepInput in;
    in.session = a->sid;
    in.tokens = {a->feed[a->fed]};
    in.want_logits = true;
    items.push_back(std::move(in));
    owners.push_back(a.get());
    --budget;
  }
  // Decode items feeding a generated token need their logits only for sampling: the
  // backend samples them where it can (pointers into `specs`, sized up front).
  std::vector<DeviceSampling> specs;
  if (opts_.device_sampling && backend_->SupportsDeviceSampling()) {
    specs.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      Active& a = *owners[i];
      if (a.fed < a.prompt_len || a.sampler.NeedsLogitRows()) continue;
      specs.emplace_back();
      a.sampler.DeviceSpec(unspellable_, &specs.back());
      items[i].sample = &specs.back();
    }
  }
  // Prefill chunks: fixed boundaries (multiples of prefill_chunk: from the start, or from a
  // prefix-cache hit off that grid, first up to the grid), never split by load.
  bool any_prefill = false;
  for (auto& a : active_) {
    size_t left = a->feed.size() - a->fed;
    if (a->done || left <= 1) continue;
    const size_t chunk = static_cast<size_t>(opts_.prefill_chunk);
    int n = static_cast<int>(std::min<size_t>(left, chunk - a->fed % chunk));
    // Over budget: wait, except the first prefill of the step, which always runs so that
    // prompts cannot starve behind many decoding sessions.
    if (n > budget && any_prefill) continue;
    StepInput in;
    in.session = a->sid;
    in.tokens.assign(a->feed.begin() + a->fed, a->feed.begin() + a->fed + n);
    in.want_logits = (static_cast<size_t>(n) == left);
    items.push_back(std::move(in));
    owners.push_back(a.get());
    budget -= n;
    any_prefill = true;
  }
  if (items.empty()) return false;

  int total_tokens = 0;
  for (const auto& in : items) total_tokens += static_cast<int>(in.tokens.size());
  std::vector<float> logits;
  std::vector<SampledToken> sampled;
  absl::Time t0 = absl::Now();
  absl::Status st = specs.empty() ? backend_->Step(items, &logits)
                                  : backend_->StepSampled(items, &logits, &sampled);
  absl::Time t1 = absl::Now();
  metrics_->step_duration->Observe(absl::ToDoubleSeconds(t1 - t0));
  metrics_->step_batch_sessions->Observe(static_cast<double>(items.size()));
  metrics_->step_batch_tokens->Observe(total_tokens);
  metrics_->steps->Increment();
  if (!st.ok()) {
    SLOG(ERROR) << "backend step failed: " << st;
    for (Active* a : owners) {
      if (!a->stored_name.empty()) {
        // The state may be inconsistent: drop the stored session.
        (void)backend_->FreeSession(a->sid);
        stored_.erase(a->stored_name);
        a->stored_name.clear();
        a->sid = 0;
      }
      Finish(*a, FinishReason::kError, absl::InternalError("backend step failed"), {});
    }
    return true;
  }
  const int vocab = backend_->model().shape.vocab;
  size_t row = 0, drawn = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    Active& a = *owners[i];
    size_t n = items[i].tokens.size();
    if (a.fed < a.prompt_len) {
      metrics_->prompt_tokens->Increment(static_cast<double>(std::min(n, a.prompt_len - a.fed)));
    }
    a.fed += n;
    if (items[i].sample) {
      const SampledToken& t = sampled[drawn++];
      SampleResult r;
      r.token = t.token;
      r.logprob = t.logprob;
      if (!a.done) EmitToken(a, std::move(r), t1);
      continue;
    }
    float* rowp = items[i].want_logits ? logits.data() + row++ * static_cast<size_t>(vocab) : nullptr;
    if (a.stored_name.empty()) {
      CheckpointPrompt(a.req.prompt, a.cache_start, a.cache_shared, a.fed, a.sid, rowp);
    }
    if (!rowp) continue;
    if (!a.done) HandleToken(a, rowp, t1);
  }
  return true;
}

void Scheduler::HandleToken(Active& a, float* logits, absl::Time now) {
  for (int32_t id : unspellable_) logits[id] = -std::numeric_limits<float>::infinity();
  EmitToken(a, a.sampler.Sample(logits, backend_->model().shape.vocab), now);
}

void Scheduler::EmitToken(Active& a, SampleResult r, absl::Time now) {
  const GenerateRequest& req = a.req;
  ++a.generated;
  metrics_->generation_tokens->Increment();
  if (a.generated == 1) {
    metrics_->time_to_first_token->Observe(absl::ToDoubleSeconds(now - req.arrival));
  } else {
    metrics_->inter_token_latency->Observe(absl::ToDoubleSeconds(now - a.last_token));
  }
  a.last_token = now;
  a.feed.push_back(r.token);  // fed next step, or kept as pending in a stored session

  GenerateEvent ev;
  bool stopped = false;
  bool stop_token = (req.stop_at_end_of_text && r.token == tokenizer_->EndOfText()) ||
                    std::find(req.stop_tokens.begin(), req.stop_tokens.end(), r.token) !=
                        req.stop_tokens.end();
  if (stop_token) {
    ev.text = a.stop.Add(a.decoder.Flush(), &stopped);
    if (!stopped) ev.text += a.stop.Finish();
    Finish(a, FinishReason::kStop, absl::OkStatus(), std::move(ev));
    return;
  }
  a.sampler.Accept(r.token);
  TokenEvent te;
  te.token = r.token;
  if (req.logprobs) {
    te.logprob = r.logprob;
    te.top = std::move(r.top);
  }
  ev.tokens.push_back(std::move(te));
  ev.text = a.stop.Add(a.decoder.Push(r.token), &stopped);
  if (stopped) {
    Finish(a, FinishReason::kStop, absl::OkStatus(), std::move(ev));
    return;
  }
  if (a.generated >= req.max_tokens) {
    ev.text += a.stop.Add(a.decoder.Flush(), &stopped);
    if (!stopped) ev.text += a.stop.Finish();
    Finish(a, stopped ? FinishReason::kStop : FinishReason::kLength, absl::OkStatus(),
           std::move(ev));
    return;
  }
  if (!a.stream->Push(std::move(ev))) {
    Finish(a, FinishReason::kSlowClient,
           absl::ResourceExhaustedError("the client read the stream too slowly"), {});
  }
}

void Scheduler::Finish(Active& a, FinishReason reason, absl::Status status, GenerateEvent ev) {
  if (a.done) return;
  a.done = true;
  absl::Time now = absl::Now();
  if (!a.stored_name.empty()) {
    auto it = stored_.find(a.stored_name);
    if (it != stored_.end()) {
      it->second.pending.assign(a.feed.begin() + a.fed, a.feed.end());
      it->second.tokens_seen += static_cast<long long>(a.fed);
      it->second.busy = false;
      it->second.last_used = now;
    }
  } else if (a.sid != 0 && !CheckpointAtFinish(a.feed, a.fed, a.sid, reason)) {
    absl::Status fs = backend_->FreeSession(a.sid);
    if (!fs.ok()) SLOG(ERROR) << "FreeSession(" << a.sid << "): " << fs;
  }
  a.sid = 0;
  ev.finish = reason;
  ev.status = std::move(status);
  ev.prompt_tokens = static_cast<int>(a.req.prompt.size());
  ev.completion_tokens = a.generated;
  ev.cached_tokens = static_cast<int>(std::min(a.cache_start, a.req.prompt.size()));
  metrics_->Finished(FinishReasonName(reason)).Increment();
  metrics_->request_latency->Observe(absl::ToDoubleSeconds(now - a.req.arrival));
  a.stream->PushFinal(std::move(ev));
}

void Scheduler::ExpireStored(absl::Time now) {
  // Idle sessions are deleted, except with --session-dir, where they stay on disk (the
  // disk budget bounds them; clients delete them). Then the tier budgets are enforced.
  for (auto it = stored_.begin(); it != stored_.end();) {
    Stored& st = it->second;
    if (st.busy || now - st.last_used < opts_.stored_session_idle_timeout ||
        (files_ && !st.ephemeral && st.tier == SessionTier::kDisk)) {
      ++it;
      continue;
    }
    if (files_ && !st.ephemeral) {
      // Saved in the background (server/session_writer.h); the loop keeps stepping.
      if (st.write_id == 0 && now >= st.next_save) StartBackgroundSave(it->first, st, now);
      ++it;
      continue;
    }
    SLOG(INFO) << "session '" << it->first << "' expired after idling";
    auto next = std::next(it);
    DropStored(it, /*remove_file=*/true);
    it = next;
  }
  (void)MakeRoom(0, /*host_must_fit=*/true, /*background=*/true);
}

void Scheduler::UpdateGauges() {
  size_t bytes = 0, kv = 0;
  int live = static_cast<int>(stored_.size());
  for (const auto& a : active_) {
    if (a->done || !a->stored_name.empty() || a->sid == 0) continue;
    ++live;
    bytes += backend_->SessionBytes(a->sid);
    kv += backend_->SessionKvTokens(a->sid);
  }
  for (const auto& [name, st] : stored_) {
    bytes += backend_->SessionBytes(st.sid);
    kv += backend_->SessionKvTokens(st.sid);
  }
  int running = 0;
  for (const auto& a : active_) running += a->done ? 0 : 1;
  metrics_->requests_running->Set(running);
  metrics_->requests_waiting->Set(waiting_count_.load());
  metrics_->sessions_active->Set(live);
  metrics_->sessions_stored->Set(static_cast<double>(stored_.size()));
  metrics_->session_state_bytes->Set(static_cast<double>(bytes));
  metrics_->sparse_kv_tokens->Set(static_cast<double>(kv));
}

}  // namespace rwkvx
