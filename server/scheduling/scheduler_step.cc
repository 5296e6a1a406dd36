// Scheduler: one step. PlanBatch over the running sequences (requests and stored-session
// prefills, in start order), Backend::BeginStep, then (SettleStep: at once, or with
// --overlap-steps once the loop's other host work is done) Backend::EndStep and the
// results: tokens sampled and emitted, prompt checkpoints, prefills advanced. Preemption
// victims are parked before the step; a lost backend ends everything (Fatal).
#include <time.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::vector<Scheduler::Runner> Scheduler::Runners() {
  std::vector<Runner> run;
  run.reserve(active_.size() + prefills_.size());
  size_t i = 0, j = 0;
  while (i < active_.size() || j < prefills_.size()) {
    if (j == prefills_.size() || (i < active_.size() && active_[i]->order < prefills_[j]->order)) {
      ActiveRequest* a = active_[i++].get();
      run.push_back(Runner{a, nullptr, &a->seq, a->sid});
    } else {
      SessionPrefill* p = prefills_[j++].get();
      run.push_back(Runner{nullptr, p, &p->seq, p->sid});
    }
  }
  return run;
}

bool Scheduler::RunStep() {
  const bool ran = LaunchStep();
  PublishDeferred();  // the last results' tokens, while this step runs
  return ran;
}

void Scheduler::PublishDeferred() {
  for (DeferredToken& d : deferred_) d.req->Publish(d);
  deferred_.clear();
}

bool Scheduler::LaunchStep() {
  SettleStep();  // the step in flight first: this plan needs its results
  const absl::Time t_plan = absl::Now();
  const double c_plan = ThreadCpuSeconds();
  std::vector<Runner> run = Runners();
  const bool device = opts_.device_sampling && backend_->SupportsDeviceSampling();
  std::vector<const Sequence*> view;
  std::vector<Sequence*> seqs;
  for (Runner& r : run) {
    if (r.req) {
      // Tokens drawn in the backend: generated ones, and the first one after the prompt
      // unless the prefix cache keeps the prompt's last logits row with its checkpoint.
      // Logits rows to the host for top_logprobs (CanSampleOnDevice).
      ActiveRequest& a = *r.req;
      a.seq.device_sample =
          device && a.CanSampleOnDevice() &&
          (a.seq.fed >= a.seq.prompt_len || a.seq.kind != SequenceKind::kRequest ||
           !prefix_.KeepsPromptEndLogits(a.req.prompt.size(), a.cache_start));
    }
    view.push_back(r.seq);
    seqs.push_back(r.seq);
  }
  const bool hold = steps_since_prefill_ + 1 < limits_.prefill_interval;
  BatchPlan plan = PlanBatch(limits_, view, MemoryNow(/*with_checkpoints=*/false), hold);
  // The step's kind (metrics) and --prefill-interval's count: 0 decode only (one token of
  // a sequence past its prompt per item), 1 mixed, 2 prompt chunks only.
  int decodes = 0;
  for (const PlanItem& it : plan.items) decodes += it.tokens == 1 && seqs[it.seq]->fed >= seqs[it.seq]->prompt_len;
  const int kind = decodes == static_cast<int>(plan.items.size()) ? 0 : decodes > 0 ? 1 : 2;
  steps_since_prefill_ = kind == 0 ? steps_since_prefill_ + 1 : 0;
  // Victims: a request of its own session gives its memory back (resumed later); others
  // sit this step out.
  for (size_t i : plan.preempt) {
    if (run[i].req && run[i].seq->kind == SequenceKind::kRequest) Preempt(*run[i].req);
  }
  if (plan.items.empty()) return false;

  // The step's inputs reuse last step's vectors (no allocation per item once warm).
  std::vector<StepInput>& items = step_items_;
  items.resize(plan.items.size());
  bool any_sample = false;
  for (size_t k = 0; k < plan.items.size(); ++k) {
    const PlanItem& it = plan.items[k];
    const Sequence& s = *seqs[it.seq];
    items[k].session = run[it.seq].sid;
    items[k].tokens.assign(s.feed.begin() + static_cast<std::ptrdiff_t>(s.fed),
                           s.feed.begin() + static_cast<std::ptrdiff_t>(s.fed) + it.tokens);
    items[k].want_logits = it.want_logits;
    items[k].sample = nullptr;
    if (it.sample) {
      ActiveRequest& a = *run[it.seq].req;
      a.DeviceSpec(unspellable_, &a.spec);
      items[k].sample = &a.spec;
      any_sample = true;
    }
  }
  step_logits_.clear();  // (capacity kept)
  step_sampled_.clear();
  const absl::Time t0 = absl::Now();
  const double c0 = ThreadCpuSeconds();
  absl::Status st = BeginBackendStep(items, any_sample);
  const absl::Time t1 = absl::Now();
  const double c1 = ThreadCpuSeconds();
  metrics_->sched_plan_seconds->Increment(absl::ToDoubleSeconds(t0 - t_plan));
  metrics_->sched_backend_seconds->Increment(absl::ToDoubleSeconds(t1 - t0));
  metrics_->sched_cpu_seconds[0]->Increment(c0 - c_plan);
  metrics_->sched_cpu_seconds[1]->Increment(c1 - c0);
  step_busy_s_ += absl::ToDoubleSeconds(t1 - t_plan);
  step_cpu_s_ += c1 - c_plan;
  metrics_->steps_kind[kind]->Increment();
  metrics_->step_batch_sessions->Observe(static_cast<double>(items.size()));
  metrics_->step_batch_tokens->Observe(plan.total_tokens);
  metrics_->steps->Increment();
  if (!st.ok()) {
    metrics_->step_duration->Observe(absl::ToDoubleSeconds(t1 - t0));
    metrics_->step_kind_seconds[kind]->Increment(absl::ToDoubleSeconds(t1 - t0));
    StepFailed(st, plan, run);
    return true;
  }
  flight_.active = true;
  flight_.plan = std::move(plan);
  flight_.run = std::move(run);
  flight_.seqs = std::move(seqs);
  flight_.kind = kind;
  flight_.begun = t0;
  if (!opts_.overlap_steps) SettleStep();
  return true;
}

void Scheduler::SettleStep() {
  if (!flight_.active) return;
  flight_.active = false;  // (Finish, called below, settles too: nothing is left to settle)
  const absl::Time t0 = absl::Now();
  const double c0 = ThreadCpuSeconds();
  absl::Status st = backend_->EndStep();
  const absl::Time t1 = absl::Now();
  const double c1 = ThreadCpuSeconds();
  metrics_->sched_backend_seconds->Increment(absl::ToDoubleSeconds(t1 - t0));
  // The step's time from its launch to its results (host work overlapped included).
  metrics_->step_duration->Observe(absl::ToDoubleSeconds(t1 - flight_.begun));
  metrics_->step_kind_seconds[flight_.kind]->Increment(absl::ToDoubleSeconds(t1 - flight_.begun));
  const BatchPlan& plan = flight_.plan;
  std::vector<Runner>& run = flight_.run;
  if (!st.ok()) {
    StepFailed(st, plan, run);
  } else {
    ApplyResults(plan, run, flight_.seqs, t1);
  }
  const absl::Time t2 = absl::Now();
  const double c2 = ThreadCpuSeconds();
  metrics_->sched_results_seconds->Increment(absl::ToDoubleSeconds(t2 - t1));
  metrics_->sched_cpu_seconds[1]->Increment(c1 - c0);
  metrics_->sched_cpu_seconds[2]->Increment(c2 - c1);
  step_busy_s_ += absl::ToDoubleSeconds(t2 - t0);
  step_cpu_s_ += c2 - c0;
}

void Scheduler::ApplyResults(const BatchPlan& plan, std::vector<Runner>& run, const std::vector<Sequence*>& seqs,
                             absl::Time now) {
  std::vector<float>& logits = step_logits_;  // the host sampler changes its rows in place
  const std::vector<SampledToken>& sampled = step_sampled_;
  const size_t vocab = static_cast<size_t>(backend_->model().shape.vocab);
  for (const ItemResult& r : ApplyStepResult(plan, seqs)) {
    if (r.prompt_tokens > 0) metrics_->prompt_tokens->Increment(static_cast<double>(r.prompt_tokens));
    if (SessionPrefill* p = run[r.seq].prefill) {
      AdvancePrefill(*p, static_cast<size_t>(r.tokens), now);  // scheduler_sessions.cc
      continue;
    }
    ActiveRequest& a = *run[r.seq].req;
    float* row = r.action == ItemAction::kSampleRow ? logits.data() + r.index * vocab : nullptr;
    if (r.checkpoint_prompt) {
      prefix_.CheckpointPrompt(a.req.prompt, a.cache_start, a.cache_shared, a.seq.fed, a.sid, row,
                               a.req.initial_space);
    }
    if (a.seq.done) continue;
    if (r.action == ItemAction::kTakeSampled) {
      SampleResult sr;
      sr.token = sampled[r.index].token;
      sr.logprob = sampled[r.index].logprob;
      EmitToken(a, std::move(sr), now);
    } else if (row) {
      HandleToken(a, row, now);
    }
  }
}

void Scheduler::StepFailed(const absl::Status& st, const BatchPlan& plan, std::vector<Runner>& run) {
  if (IsBackendLost(st) || !backend_->Healthy()) {
    Fatal(st, plan, run);
    return;
  }
  // Planned steps never run out of memory (preemption): one that does is a bug.
  if (absl::IsResourceExhausted(st)) SLOG(ERROR) << "BUG: a planned step ran out of memory";
  SLOG(ERROR) << "backend step failed: " << st;
  FailStep(plan, run);
}

void Scheduler::FailStep(const BatchPlan& plan, std::vector<Runner>& run) {
  for (const PlanItem& it : plan.items) {
    Runner& r = run[it.seq];
    if (SessionPrefill* p = r.prefill) {
      SLOG(ERROR) << "session '" << p->name << "': prefill step failed";
      store_.Drop(p->name);  // its state may be inconsistent
      EndPrefill(*p, absl::InternalError("prefill failed"));
      continue;
    }
    ActiveRequest& a = *r.req;
    if (!a.stored_name.empty()) {
      store_.Drop(a.stored_name);  // its state may be inconsistent
      a.stored_name.clear();
      a.sid = 0;
    }
    Finish(a, FinishReason::kError, absl::InternalError("backend step failed"), {});
  }
}

absl::Status Scheduler::BeginBackendStep(const std::vector<StepInput>& items, bool sampled) {
  if (testing_.fail_step_after > 0) {
    int busy = 0;
    for (const auto& a : active_) busy += !a->seq.done;
    if (busy >= opts_.max_running && ++full_steps_ == testing_.fail_step_after) {
      return BackendLostError(absl::StrCat("testing: step ", full_steps_,
                                           " with every slot busy fails (--testing-fail-step-after)"));
    }
  }
  return backend_->BeginStep(items, &step_logits_, sampled ? &step_sampled_ : nullptr);
}

void Scheduler::Fatal(const absl::Status& st, const BatchPlan& plan, std::vector<Runner>& run) {
  SLOG(ERROR) << "backend lost: " << st << "; not ready, ending every request, then exiting";
  fatal_.store(true);
  {
    std::lock_guard<std::mutex> l(mu_);
    draining_.store(true);  // Submit refuses, /ready and gRPC health say not serving
  }
  metrics_->ready->Set(0);
  if (on_fatal_) on_fatal_();  // the owner starts draining; everything below ends at once
  const absl::Status why =
      absl::UnavailableError("the server lost its compute backend and is restarting; retry");
  // The sessions the step fed may be half-advanced: dropped, their saved files (older) stay.
  for (const PlanItem& it : plan.items) {
    Runner& r = run[it.seq];
    if (SessionPrefill* p = r.prefill) {
      store_.Drop(p->name);
      EndPrefill(*p, why);
    } else if (!r.req->stored_name.empty()) {
      store_.Drop(r.req->stored_name);
      r.req->stored_name.clear();
      r.req->sid = 0;
    }
  }
  for (auto& a : active_) Finish(*a, FinishReason::kError, why, {});
  EndPreempted(nullptr, FinishReason::kError, why);
  EndAllWaiting(FinishReason::kError, why);
  EndPrefills(why);
}

void Scheduler::HandleToken(ActiveRequest& a, float* logits, absl::Time now) {
  EmitToken(a, a.SampleRow(logits, backend_->model().shape.vocab, unspellable_), now);
}

void Scheduler::EmitToken(ActiveRequest& a, SampleResult r, absl::Time now) {
  if (auto end = a.Emit(std::move(r), now, metrics_, &notifier_, opts_.overlap_steps ? &deferred_ : nullptr)) {
    Finish(a, end->reason, std::move(end->status), std::move(end->event), end->flush);
  }
}

}  // namespace rwkvx
