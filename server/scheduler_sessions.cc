// Scheduler: stored (named) sessions, the session API. The public calls post a command to
// the loop thread, which alone touches stored_ and the backend; `done` runs there.
// Tiers (backend / host / disk) are in server/session_tiers.cc.
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/snapshot.h"
#include "server/log.h"
#include "server/scheduler.h"

namespace rwkvx {
namespace {

absl::Status CheckNewName(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return absl::InvalidArgumentError("a session id must be 1 to 128 characters");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return absl::InvalidArgumentError("a session id may only contain A-Z a-z 0-9 . _ : -");
  }
  return absl::OkStatus();
}

absl::Status ShuttingDown() { return absl::UnavailableError("the server is shutting down"); }

}  // namespace

StoredSessionInfo Scheduler::InfoOf(const std::string& name, const Stored& st) const {
  StoredSessionInfo info;
  info.name = name;
  info.tier = st.tier;
  info.saved = st.saved;
  info.tokens_seen = st.tokens_seen;
  if (st.tier == SessionTier::kBackend) {
    info.state_bytes = backend_->SessionBytes(st.sid);
    info.kv_tokens = backend_->SessionKvTokens(st.sid);
    info.pending_tokens = static_cast<long long>(st.pending.size());
  } else {
    info.state_bytes = st.tier_bytes;
    info.pending_tokens = st.pending_count;
  }
  info.created = st.created;
  info.last_used = st.last_used;
  info.expires = st.last_used + opts_.stored_session_idle_timeout;
  info.busy = st.busy;
  return info;
}

void Scheduler::CreateSession(std::string name, InfoCallback done) {
  CreateSession(std::move(name), {}, false, std::move(done));
}

void Scheduler::CreateSession(std::string name, std::vector<int32_t> tokens, bool ephemeral,
                              InfoCallback done) {
  auto cmd = [this, name, tokens = std::move(tokens), ephemeral, done]() mutable {
    if (absl::Status s = CheckNewName(name); !s.ok()) return done(s);
    if (stored_.count(name)) {
      return done(absl::AlreadyExistsError("a session named '" + name + "' already exists"));
    }
    if (static_cast<int>(stored_.size()) >= opts_.max_stored_sessions) {
      return done(absl::ResourceExhaustedError("too many stored sessions; delete some first"));
    }
    const ModelShape& sh = backend_->model().shape;
    if (absl::Status s = MakeRoom(SessionState::Zero(sh).Bytes()); !s.ok()) return done(s);
    auto sid = backend_->CreateSession();
    if (!sid.ok()) return done(absl::ResourceExhaustedError("no session memory available"));
    Stored st;
    st.sid = *sid;
    st.pending = std::move(tokens);
    st.ephemeral = ephemeral;
    st.created = st.last_used = absl::Now();
    auto it = stored_.emplace(name, std::move(st)).first;
    UpdateGauges();
    it->second.busy = true;
    PrefillStored(name, std::move(done));
  };
  if (!Post(std::move(cmd))) done(ShuttingDown());
}

void Scheduler::PrefillStored(const std::string& name, InfoCallback done) {
  auto it = stored_.find(name);
  if (it == stored_.end()) return done(absl::NotFoundError("no session named '" + name + "'"));
  Stored& st = it->second;
  const size_t chunk = static_cast<size_t>(opts_.prefill_chunk);
  if (st.tier != SessionTier::kBackend || st.pending.size() <= chunk) {
    st.busy = false;
    st.last_used = absl::Now();
    return done(InfoOf(name, st));
  }
  // One chunk per loop iteration (running requests keep stepping in between), cut
  // exactly where a generate over the pending tokens would cut them.
  StepInput in;
  in.session = st.sid;
  in.tokens.assign(st.pending.begin(), st.pending.begin() + chunk);
  in.want_logits = false;
  std::vector<float> logits;
  absl::Status s = backend_->Step({in}, &logits);
  if (!s.ok()) {
    SLOG(ERROR) << "session '" << name << "': prefill step failed: " << s;
    DropStored(it, /*remove_file=*/false);  // its state may be inconsistent
    UpdateGauges();
    return done(absl::InternalError("prefill failed"));
  }
  metrics_->prompt_tokens->Increment(static_cast<double>(chunk));
  st.pending.erase(st.pending.begin(), st.pending.begin() + chunk);
  st.tokens_seen += static_cast<long long>(chunk);
  if (!Post([this, name, done]() { PrefillStored(name, done); })) {
    st.busy = false;
    done(ShuttingDown());
  }
}

void Scheduler::GetSession(std::string name, InfoCallback done) {
  auto cmd = [this, name, done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) return done(absl::NotFoundError("no session named '" + name + "'"));
    done(InfoOf(name, it->second));
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::ListSessions(ListCallback done) {
  auto cmd = [this, done]() {
    std::vector<StoredSessionInfo> out;
    for (const auto& [name, st] : stored_) {
      if (!st.ephemeral) out.push_back(InfoOf(name, st));
    }
    done(std::move(out));
  };
  if (!Post(cmd)) done({});
}

void Scheduler::DeleteSession(std::string name, std::function<void(absl::Status)> done) {
  auto cmd = [this, name, done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) return done(absl::NotFoundError("no session named '" + name + "'"));
    if (it->second.busy) {
      return done(absl::FailedPreconditionError("session '" + name + "' is in use by a request"));
    }
    DropStored(it, /*remove_file=*/true);
    UpdateGauges();
    done(absl::OkStatus());
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::AppendToSession(std::string name, std::vector<int32_t> tokens, InfoCallback done) {
  auto cmd = [this, name, tokens = std::move(tokens), done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) return done(absl::NotFoundError("no session named '" + name + "'"));
    Stored& st = it->second;
    if (st.busy) {
      return done(absl::FailedPreconditionError("session '" + name + "' is in use by a request"));
    }
    if (absl::Status s = LoadStored(name, st); !s.ok()) return done(s);
    st.pending.insert(st.pending.end(), tokens.begin(), tokens.end());
    st.busy = true;
    ++st.version;  // a background save of the state before this must not move it to disk
    PrefillStored(name, done);
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::ForkSession(std::string source, std::string name, InfoCallback done) {
  auto cmd = [this, source, name, done]() {
    if (absl::Status s = CheckNewName(name); !s.ok()) return done(s);
    auto src = stored_.find(source);
    if (src == stored_.end()) return done(absl::NotFoundError("no session named '" + source + "'"));
    if (stored_.count(name)) {
      return done(absl::AlreadyExistsError("a session named '" + name + "' already exists"));
    }
    if (src->second.busy) {
      return done(absl::FailedPreconditionError("session '" + source + "' is in use by a request"));
    }
    if (static_cast<int>(stored_.size()) >= opts_.max_stored_sessions) {
      return done(absl::ResourceExhaustedError("too many stored sessions; delete some first"));
    }
    Stored copy;
    copy.created = copy.last_used = absl::Now();
    copy.tokens_seen = src->second.tokens_seen;
    if (src->second.tier == SessionTier::kBackend) {
      if (absl::Status s = MakeRoom(backend_->SessionBytes(src->second.sid)); !s.ok()) return done(s);
      src = stored_.find(source);  // MakeRoom may have moved it (never erased it)
    }
    if (src->second.tier == SessionTier::kBackend) {
      auto sid = backend_->ForkSession(src->second.sid);
      if (!sid.ok()) return done(absl::ResourceExhaustedError("no session memory available"));
      copy.sid = *sid;
      copy.pending = src->second.pending;
    } else {
      // Outside the backend a fork is a copy of the bytes, kept in host memory.
      auto bytes = SnapshotOf(source, src->second);
      if (!bytes.ok()) return done(bytes.status());
      copy.tier = SessionTier::kHost;
      copy.snapshot = std::make_shared<const std::string>(std::move(*bytes));
      copy.tier_bytes = copy.snapshot->size();
      copy.pending_count = src->second.pending_count;
    }
    auto it = stored_.emplace(name, std::move(copy)).first;
    UpdateGauges();
    done(InfoOf(name, it->second));
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::SnapshotSession(std::string name, bool remove, BytesCallback done) {
  auto cmd = [this, name, remove, done]() {
    auto it = stored_.find(name);
    if (it == stored_.end()) return done(absl::NotFoundError("no session named '" + name + "'"));
    if (it->second.busy) {
      return done(absl::FailedPreconditionError("session '" + name + "' is in use by a request"));
    }
    auto bytes = SnapshotOf(name, it->second);
    if (bytes.ok() && remove) {
      DropStored(it, /*remove_file=*/true);
      UpdateGauges();
    }
    done(std::move(bytes));
  };
  if (!Post(cmd)) done(ShuttingDown());
}

void Scheduler::RestoreSession(std::string name, std::string bytes, bool ephemeral,
                               InfoCallback done) {
  auto cmd = [this, name, bytes = std::move(bytes), ephemeral, done]() mutable {
    if (absl::Status s = CheckNewName(name); !s.ok()) return done(s);
    if (stored_.count(name)) {
      return done(absl::AlreadyExistsError("a session named '" + name + "' already exists"));
    }
    if (static_cast<int>(stored_.size()) >= opts_.max_stored_sessions) {
      return done(absl::ResourceExhaustedError("too many stored sessions; delete some first"));
    }
    if (bytes.size() > opts_.max_snapshot_bytes) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "the snapshot is larger than this server's limit of ", opts_.max_snapshot_bytes, " bytes")));
    }
    std::vector<int32_t> pending;
    auto state = ParseSnapshot(backend_->model(), bytes, &pending);
    if (!state.ok()) {
      // Every refusal (damaged, truncated, another model or version) is the client's input.
      return done(absl::InvalidArgumentError(state.status().message()));
    }
    // Kept as bytes in host memory; loaded into the backend by its first use.
    Stored st;
    st.tier = SessionTier::kHost;
    st.snapshot = std::make_shared<const std::string>(std::move(bytes));
    st.tier_bytes = st.snapshot->size();
    st.tokens_seen = state->tokens_seen;
    st.pending_count = static_cast<long long>(pending.size());
    st.ephemeral = ephemeral;
    st.created = st.last_used = absl::Now();
    auto it = stored_.emplace(name, std::move(st)).first;
    if (!ephemeral) {
      if (absl::Status s = MakeRoom(0); !s.ok()) {
        stored_.erase(name);
        return done(s);
      }
      it = stored_.find(name);
    }
    UpdateGauges();
    done(InfoOf(name, it->second));
  };
  if (!Post(std::move(cmd))) done(ShuttingDown());
}

}  // namespace rwkvx
