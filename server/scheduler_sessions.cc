// Scheduler: stored (named) sessions. The public calls post a command to the loop thread,
// which alone touches stored_ and the backend.
#include <utility>

#include "server/scheduler.h"

namespace rwkvx {

StoredSessionInfo Scheduler::InfoOf(const std::string& name, const Stored& st) const {
  StoredSessionInfo info;
  info.name = name;
  info.state_bytes = backend_->SessionBytes(st.sid);
  info.kv_tokens = backend_->SessionKvTokens(st.sid);
  auto exported = backend_->ExportSession(st.sid);
  info.tokens_seen = exported.ok() ? exported->tokens_seen : 0;
  info.created = st.created;
  info.last_used = st.last_used;
  info.expires = st.last_used + opts_.stored_session_idle_timeout;
  info.busy = st.busy;
  return info;
}

void Scheduler::CreateSession(std::string name, InfoCallback done) {
  auto cmd = [this, name, done]() {
    if (stored_.count(name)) {
      done(absl::AlreadyExistsError("a session named '" + name + "' already exists"));
      return;
    }
    if (static_cast<int>(stored_.size()) >= opts_.max_stored_sessions) {
      done(absl::ResourceExhaustedError("too many stored sessions; delete some first"));
      return;
    }
    size_t bytes = 0;
    for (const auto& [n, st] : stored_) bytes += backend_->SessionBytes(st.sid);
    if (bytes >= opts_.stored_session_budget_bytes) {
      done(absl::ResourceExhaustedError("the stored-session memory budget is used up"));
      return;
    }
    auto sid = backend_->CreateSession();
    if (!sid.ok()) {
      done(absl::ResourceExhaustedError("no session memory available"));
      return;
    }
    Stored st;
    st.sid = *sid;
    st.created = st.last_used = absl::Now();
    auto it = stored_.emplace(name, std::move(st)).first;
    UpdateGauges();
    done(InfoOf(name, it->second));
  };
  if (!Post(cmd)) done(absl::UnavailableError("the server is shutting down"));
}

void Scheduler::GetSession(std::string name, InfoCallback done) {
  auto cmd = [this, name, done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) {
      done(absl::NotFoundError("no session named '" + name + "'"));
      return;
    }
    done(InfoOf(name, it->second));
  };
  if (!Post(cmd)) done(absl::UnavailableError("the server is shutting down"));
}

void Scheduler::DeleteSession(std::string name, std::function<void(absl::Status)> done) {
  auto cmd = [this, name, done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) {
      done(absl::NotFoundError("no session named '" + name + "'"));
      return;
    }
    if (it->second.busy) {
      done(absl::FailedPreconditionError("session '" + name + "' is in use by a request"));
      return;
    }
    (void)backend_->FreeSession(it->second.sid);
    stored_.erase(it);
    UpdateGauges();
    done(absl::OkStatus());
  };
  if (!Post(cmd)) done(absl::UnavailableError("the server is shutting down"));
}

}  // namespace rwkvx
