// Service: the session API and the client-held flow. Prompts are validated and tokenized
// here, on the caller's thread; the scheduler's session calls run on its loop thread and
// call back there (server/sessions/scheduler_sessions.cc).
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/initial_states.h"
#include "server/random_id.h"
#include "server/scheduling/scheduler.h"
#include "server/service/service.h"

namespace rwkvx {
namespace {

std::string NameOrNew(std::optional<std::string> name) {
  return name ? std::move(*name) : RandomId("sess-");
}

}  // namespace

void Service::CreateSession(std::optional<std::string> name, PromptInput prompt,
                            SessionCallback done, const std::string& initial_state) {
  // A name the scheduler will refuse anyway: refused before tokenizing the prompt.
  if (name && name->size() > 128) {
    return done(absl::InvalidArgumentError("session_id is longer than 128 bytes"));
  }
  std::shared_ptr<const SessionState> initial;
  if (!initial_state.empty()) {
    auto st = FindInitialState(initial_state);
    if (!st.ok()) return done(st.status());
    initial = (*st)->state;
  }
  auto tokens = PromptTokens(prompt, /*required=*/false, /*may_be_empty=*/true);
  if (!tokens.ok()) return done(tokens.status());
  scheduler_->CreateSession(NameOrNew(std::move(name)), std::move(*tokens), /*ephemeral=*/false,
                            std::move(done), std::move(initial));
}

void Service::AppendToSession(std::string name, PromptInput prompt, SessionCallback done,
                              std::shared_ptr<AppendControl> control) {
  auto tokens = PromptTokens(prompt, /*required=*/false, /*may_be_empty=*/true);
  if (!tokens.ok()) return done(tokens.status());
  scheduler_->AppendToSession(std::move(name), std::move(*tokens), std::move(done),
                              std::move(control));
}

void Service::ForkSession(std::string source, std::optional<std::string> name,
                          SessionCallback done) {
  scheduler_->ForkSession(std::move(source), NameOrNew(std::move(name)), std::move(done));
}

void Service::SnapshotSession(std::string name, BytesCallback done) {
  scheduler_->SnapshotSession(std::move(name), /*remove=*/false, std::move(done));
}

void Service::RestoreSession(std::optional<std::string> name, std::string bytes,
                             SessionCallback done) {
  scheduler_->RestoreSession(NameOrNew(std::move(name)), std::move(bytes), /*ephemeral=*/false,
                             std::move(done));
}

void Service::GetSession(std::string name, SessionCallback done) {
  scheduler_->GetSession(std::move(name), std::move(done));
}

void Service::ListSessions(SessionListCallback done) { scheduler_->ListSessions(std::move(done)); }

void Service::DeleteSession(std::string name, DoneCallback done) {
  scheduler_->DeleteSession(std::move(name), std::move(done));
}

void Service::GenerateFromSnapshot(const GenerateParams& p, std::optional<std::string> snapshot,
                                   ClientHeldCallback started) {
  if (!p.session_id.empty()) {
    return started(absl::InvalidArgumentError("give session_id or snapshot, not both"));
  }
  // A fresh client-held state may start from an initial state; a snapshot has its own.
  std::shared_ptr<const SessionState> initial;
  if (!p.initial_state.empty()) {
    if (snapshot) {
      return started(absl::InvalidArgumentError(
          "'initial_state' cannot be combined with a snapshot: the snapshot already has its state"));
    }
    auto st = FindInitialState(p.initial_state);
    if (!st.ok()) return started(st.status());
    initial = (*st)->state;
  }
  // Validated and tokenized here, on the caller's thread; the loop thread only submits.
  GenerateParams q = p;
  q.initial_state.clear();  // the ephemeral session starts from it (below)
  q.session_id = RandomId("client-state-");
  auto streams = BuildStreams(q);
  if (!streams.ok()) return started(streams.status());
  Scheduler* sched = scheduler_;
  std::string session = q.session_id;
  auto submit = [sched, session, stream = std::move(streams->front()),
                 started](absl::StatusOr<StoredSessionInfo> info) {
    if (!info.ok()) return started(info.status());
    // The generation owns the session from here: dropped on error, it deletes it.
    auto gen = std::make_shared<ClientHeldGeneration>(sched, session, stream);
    if (absl::Status s = sched->Submit(stream); !s.ok()) return started(s);
    started(std::move(gen));
  };
  if (snapshot) {
    scheduler_->RestoreSession(session, std::move(*snapshot), /*ephemeral=*/true, std::move(submit));
  } else {
    scheduler_->CreateSession(session, {}, /*ephemeral=*/true, std::move(submit), std::move(initial));
  }
}

ClientHeldGeneration::ClientHeldGeneration(Scheduler* scheduler, std::string session,
                                           std::shared_ptr<RequestStream> stream)
    : scheduler_(scheduler), session_(std::move(session)), stream_(std::move(stream)) {}

ClientHeldGeneration::~ClientHeldGeneration() {
  if (!finished_.exchange(true)) {
    stream_->Cancel();
    scheduler_->DeleteSession(session_, [](absl::Status) {});
  }
}

void ClientHeldGeneration::Finish(const GenerateEvent& last, BytesCallback done) {
  if (finished_.exchange(true)) {
    return done(absl::FailedPreconditionError("client-held generation already finished"));
  }
  if (last.finish == FinishReason::kError || last.finish == FinishReason::kCancelled) {
    scheduler_->DeleteSession(session_, [](absl::Status) {});
    return done(last.status.ok() ? absl::InternalError("generation failed") : last.status);
  }
  scheduler_->SnapshotSession(session_, /*remove=*/true, std::move(done));
}

}  // namespace rwkvx
