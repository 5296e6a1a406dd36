// Scheduler: the session API. Each public call posts a command to the loop thread, which
// alone touches the session store (server/sessions/session_store.h) and the backend;
// `done` runs there. Create and append then prefill their whole chunks as a
// kSessionPrefill sequence that the step planner schedules like any prefill.
#include <algorithm>
#include <utility>

#include "server/errors.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {
namespace {

absl::Status ShuttingDown() { return absl::UnavailableError("the server is shutting down"); }

}  // namespace

void Scheduler::StartPrefill(const std::string& name, InfoCallback done,
                             std::shared_ptr<AppendControl> control, size_t appended) {
  const SessionStore::Stored* st = store_.Find(name);
  if (!st) return done(absl::NotFoundError("no session named '" + name + "'"));
  auto p = std::make_unique<SessionPrefill>();
  p->name = name;
  p->sid = st->sid;
  p->seq.kind = SequenceKind::kSessionPrefill;
  p->seq.feed = st->pending;
  p->seq.prompt_len = p->seq.feed.size();
  p->done = std::move(done);
  p->control = std::move(control);
  p->before = p->seq.feed.size() - std::min(appended, p->seq.feed.size());
  if (p->control) p->control->Progress(0, static_cast<int64_t>(p->seq.feed.size() - p->before));
  if (st->tier != SessionTier::kBackend || PrefillComplete(p->seq, limits_.prefill_chunk)) {
    return EndPrefill(*p, store_.EndPrefill(name, absl::Now()));  // no whole chunk to feed
  }
  // The chunks are cut exactly where a generate over the pending tokens would cut them,
  // one per step (running requests keep stepping in the same steps).
  p->order = next_order_++;
  prefills_.push_back(std::move(p));
}

void Scheduler::AdvancePrefill(SessionPrefill& p, size_t n, absl::Time now) {
  store_.ConsumePending(p.name, n);
  if (p.control) {
    const size_t fed = p.seq.fed > p.before ? p.seq.fed - p.before : 0;
    p.control->Progress(static_cast<int64_t>(fed), static_cast<int64_t>(p.seq.feed.size() - p.before));
  }
  if (PrefillComplete(p.seq, limits_.prefill_chunk)) return EndPrefill(p, store_.EndPrefill(p.name, now));
  if (p.control && p.control->cancelled()) {
    // Cancelled between chunks: the session keeps what was fed (a chunk boundary) and the
    // pending tokens from before this append; this append's unfed tokens are dropped.
    store_.DropPending(p.name, p.before > p.seq.fed ? p.before - p.seq.fed : 0);
    (void)store_.EndPrefill(p.name, now);
    EndPrefill(p, absl::CancelledError("the append was cancelled by the client"));
  }
}

void Scheduler::EndPrefill(SessionPrefill& p, absl::StatusOr<StoredSessionInfo> result) {
  p.seq.done = true;
  if (!result.ok()) result = Unshared(result.status());  // one rep per receiving thread
  p.done(std::move(result));
}

void Scheduler::EndPrefills(absl::Status why) {
  for (auto& p : prefills_) {
    if (p->seq.done) continue;
    (void)store_.EndPrefill(p->name, absl::Now());  // idle again, its pending tokens kept
    EndPrefill(*p, why);
  }
  prefills_.clear();
}

void Scheduler::CreateSession(std::string name, InfoCallback done) {
  CreateSession(std::move(name), {}, false, std::move(done));
}

void Scheduler::CreateSession(std::string name, std::vector<int32_t> tokens, bool ephemeral,
                              InfoCallback done, std::shared_ptr<const SessionState> initial) {
  auto cmd = [this, name, tokens = std::move(tokens), ephemeral, done, initial]() mutable {
    if (absl::Status s = store_.Create(name, std::move(tokens), ephemeral, initial.get()); !s.ok()) {
      return done(s);
    }
    UpdateGauges();
    StartPrefill(name, std::move(done));
  };
  if (!Post(std::move(cmd))) done(ShuttingDown());
}

void Scheduler::AppendToSession(std::string name, std::vector<int32_t> tokens, InfoCallback done,
                                std::shared_ptr<AppendControl> control) {
  auto cmd = [this, name, tokens = std::move(tokens), done, control]() mutable {
    if (absl::Status s = store_.Append(name, tokens); !s.ok()) return done(s);
    StartPrefill(name, std::move(done), std::move(control), tokens.size());
  };
  if (!Post(std::move(cmd))) done(ShuttingDown());
}

void Scheduler::GetSession(std::string name, InfoCallback done) {
  if (!Post([this, name, done]() { done(store_.Info(name)); })) done(ShuttingDown());
}

void Scheduler::ListSessions(ListCallback done) {
  if (!Post([this, done]() { done(store_.List()); })) done({});
}

void Scheduler::DeleteSession(std::string name, std::function<void(absl::Status)> done) {
  auto cmd = [this, name, done]() {
    absl::Status s = store_.Delete(name);
    if (s.ok()) UpdateGauges();
    done(s);
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::ForkSession(std::string source, std::string name, InfoCallback done,
                            bool ephemeral) {
  auto cmd = [this, source, name, done, ephemeral]() {
    auto info = store_.Fork(source, name, ephemeral);
    if (info.ok()) UpdateGauges();
    done(std::move(info));
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::SnapshotSession(std::string name, bool remove, BytesCallback done) {
  auto cmd = [this, name, remove, done]() {
    auto bytes = store_.Snapshot(name, remove);
    if (bytes.ok() && remove) UpdateGauges();
    done(std::move(bytes));
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::RestoreSession(std::string name, std::string bytes, bool ephemeral,
                               InfoCallback done) {
  auto cmd = [this, name, bytes = std::move(bytes), ephemeral, done]() mutable {
    auto info = store_.Restore(name, std::move(bytes), ephemeral);
    if (info.ok()) UpdateGauges();
    done(std::move(info));
  };
  if (!Post(std::move(cmd))) done(ShuttingDown());
}

}  // namespace rwkvx
