// SessionStore: the operations of the session API (the tiers are in session_tiers.cc).
// Loop thread only.
#include "server/sessions/session_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/snapshot.h"
#include "engine/status_macros.h"
#include "server/log.h"

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

absl::Status NotFound(const std::string& name) {
  return absl::NotFoundError("no session named '" + name + "'");
}
absl::Status Exists(const std::string& name) {
  return absl::AlreadyExistsError("a session named '" + name + "' already exists");
}
absl::Status InUse(const std::string& name) {
  return absl::FailedPreconditionError("session '" + name + "' is in use by a request");
}

}  // namespace

SessionStore::SessionStore(Backend* backend, SessionStoreOptions opts, ServerMetrics* metrics)
    : backend_(backend), opts_(opts), metrics_(metrics) {}

SessionStore::~SessionStore() {
  writer_.reset();  // joins the writer thread before the entries and files go
  while (!stored_.empty()) DropStored(stored_.begin(), /*remove_file=*/false);
}

StoredSessionInfo SessionStore::InfoOf(const std::string& name, const Stored& st) const {
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
  info.expires = st.last_used + opts_.idle_timeout;
  info.busy = st.busy;
  return info;
}

absl::Status SessionStore::CheckRoomForNew(const std::string& name) {
  RWKVX_RETURN_IF_ERROR(CheckNewName(name));
  // Here, in the session dir, or held by another replica (Aborted).
  if (auto r = Resolve(name); r.ok() || r.status().code() == absl::StatusCode::kDataLoss) {
    return Exists(name);
  } else if (r.status().code() != absl::StatusCode::kNotFound) {
    return r.status();
  }
  // This replica's sessions: in its memory, or files it wrote (not every file of a
  // directory shared with other replicas).
  int mine = 0;
  for (const auto& [n, st] : stored_) mine += st.tier != SessionTier::kDisk || st.written_here;
  if (mine >= opts_.max_stored_sessions) {
    return absl::ResourceExhaustedError("too many stored sessions; delete some first");
  }
  return absl::OkStatus();
}

absl::Status SessionStore::Create(const std::string& name, std::vector<int32_t> tokens,
                                  bool ephemeral, const SessionState* initial) {
  RWKVX_RETURN_IF_ERROR(CheckRoomForNew(name));
  RWKVX_RETURN_IF_ERROR(MakeRoom(SessionState::Zero(backend_->model().shape).Bytes()));
  Stored st;
  st.ephemeral = ephemeral;
  RWKVX_RETURN_IF_ERROR(ClaimNew(name, st));  // two replicas creating one name: one wins
  auto sid = initial ? backend_->ImportSession(*initial) : backend_->CreateSession();
  if (!sid.ok()) {
    ReleaseLease(name, st);
    return absl::ResourceExhaustedError("no session memory available");
  }
  st.sid = *sid;
  st.pending = std::move(tokens);
  st.created = st.last_used = absl::Now();
  st.busy = true;
  stored_.emplace(name, std::move(st));
  return absl::OkStatus();
}

absl::Status SessionStore::Append(const std::string& name, const std::vector<int32_t>& tokens) {
  auto it = Resolve(name);
  if (!it.ok()) return it.status();
  Stored& st = (*it)->second;
  if (st.busy) return InUse(name);
  RWKVX_RETURN_IF_ERROR(LoadStored(name, st));
  st.pending.insert(st.pending.end(), tokens.begin(), tokens.end());
  st.busy = true;
  ++st.version;  // a background save of the state before this must not move it to disk
  return absl::OkStatus();
}

void SessionStore::ConsumePending(const std::string& name, size_t n) {
  auto it = stored_.find(name);
  if (it == stored_.end()) return;
  std::vector<int32_t>& p = it->second.pending;
  n = std::min(n, p.size());
  p.erase(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n));
  it->second.tokens_seen += static_cast<long long>(n);
}

void SessionStore::DropPending(const std::string& name, size_t keep) {
  auto it = stored_.find(name);
  if (it != stored_.end() && it->second.pending.size() > keep) it->second.pending.resize(keep);
}

absl::StatusOr<StoredSessionInfo> SessionStore::EndPrefill(const std::string& name, absl::Time now) {
  auto it = stored_.find(name);
  if (it == stored_.end()) return NotFound(name);
  it->second.busy = false;
  it->second.last_used = now;
  return InfoOf(name, it->second);
}

absl::StatusOr<StoredSessionInfo> SessionStore::Info(const std::string& name) {
  auto it = Resolve(name);
  if (!it.ok()) return it.status();
  return InfoOf(name, (*it)->second);
}

std::vector<StoredSessionInfo> SessionStore::List() {
  if (absl::Status s = SyncWithDir(); !s.ok()) SLOG(WARNING) << "session dir: cannot list it: " << s;
  std::vector<StoredSessionInfo> out;
  for (const auto& [name, st] : stored_) {
    if (!st.ephemeral) out.push_back(InfoOf(name, st));
  }
  return out;
}

absl::Status SessionStore::Delete(const std::string& name) {
  auto r = Resolve(name);
  if (!r.ok()) return r.status();
  auto it = *r;
  if (it->second.busy) return InUse(name);
  RWKVX_RETURN_IF_ERROR(HoldLease(name, it->second));  // a file: nobody loads it meanwhile
  DropStored(it, /*remove_file=*/true);
  return absl::OkStatus();
}

absl::StatusOr<StoredSessionInfo> SessionStore::Fork(const std::string& source,
                                                     const std::string& name, bool ephemeral) {
  RWKVX_RETURN_IF_ERROR(CheckNewName(name));
  auto resolved = Resolve(source);
  if (!resolved.ok()) return resolved.status();
  auto src = *resolved;
  RWKVX_RETURN_IF_ERROR(CheckRoomForNew(name));
  if (src->second.busy) return InUse(source);
  Stored copy;
  copy.ephemeral = ephemeral;
  copy.created = copy.last_used = absl::Now();
  copy.tokens_seen = src->second.tokens_seen;
  if (src->second.tier == SessionTier::kBackend) {
    RWKVX_RETURN_IF_ERROR(MakeRoom(backend_->SessionBytes(src->second.sid)));
    src = stored_.find(source);  // MakeRoom may have moved it (never erased it)
  }
  if (src->second.tier == SessionTier::kBackend) {
    auto sid = backend_->ForkSession(src->second.sid);
    if (!sid.ok()) return absl::ResourceExhaustedError("no session memory available");
    copy.sid = *sid;
    copy.pending = src->second.pending;
  } else {
    // Outside the backend a fork is a copy of the bytes, kept in host memory.
    auto bytes = SnapshotOf(source, src->second);
    if (!bytes.ok()) return bytes.status();
    copy.tier = SessionTier::kHost;
    copy.snapshot = std::make_shared<const std::string>(std::move(*bytes));
    copy.tier_bytes = copy.snapshot->size();
    copy.pending_count = src->second.pending_count;
  }
  if (absl::Status s = ClaimNew(name, copy); !s.ok()) {
    if (copy.tier == SessionTier::kBackend) (void)backend_->FreeSession(copy.sid);
    return s;
  }
  auto it = stored_.emplace(name, std::move(copy)).first;
  return InfoOf(name, it->second);
}

absl::StatusOr<std::string> SessionStore::Snapshot(const std::string& name, bool remove) {
  auto r = Resolve(name);
  if (!r.ok()) return r.status();
  auto it = *r;
  if (it->second.busy) return InUse(name);
  if (remove) RWKVX_RETURN_IF_ERROR(HoldLease(name, it->second));
  auto bytes = SnapshotOf(name, it->second);
  if (bytes.ok() && remove) DropStored(it, /*remove_file=*/true);
  if (!bytes.ok() && it->second.tier == SessionTier::kDisk) ReleaseLease(name, it->second);
  return bytes;
}

absl::StatusOr<StoredSessionInfo> SessionStore::Restore(const std::string& name,
                                                        std::string bytes, bool ephemeral) {
  RWKVX_RETURN_IF_ERROR(CheckRoomForNew(name));
  if (bytes.size() > opts_.max_snapshot_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the snapshot is larger than this server's limit of ", opts_.max_snapshot_bytes, " bytes"));
  }
  std::vector<int32_t> pending;
  auto state = ParseSnapshot(backend_->model(), bytes, &pending);
  if (!state.ok()) {
    // Every refusal (damaged, truncated, another model or version) is the client's input.
    return absl::InvalidArgumentError(state.status().message());
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
  RWKVX_RETURN_IF_ERROR(ClaimNew(name, st));
  auto it = stored_.emplace(name, std::move(st)).first;
  if (!ephemeral) {
    if (absl::Status s = MakeRoom(0); !s.ok()) {
      DropStored(stored_.find(name), /*remove_file=*/false);
      return s;
    }
    it = stored_.find(name);
  }
  return InfoOf(name, it->second);
}

absl::StatusOr<SessionId> SessionStore::Acquire(const std::string& name, bool has_prompt,
                                                std::vector<int32_t>* pending) {
  auto it = Resolve(name);
  if (!it.ok()) return it.status();
  Stored& st = (*it)->second;
  if (st.busy) {
    return absl::FailedPreconditionError("session '" + name + "' is in use by another request");
  }
  RWKVX_RETURN_IF_ERROR(LoadStored(name, st));
  if (st.pending.empty() && !has_prompt) {
    return absl::InvalidArgumentError("session '" + name +
                                      "' has no tokens to continue from; give a prompt");
  }
  st.busy = true;
  ++st.version;  // a background save of the state before this must not move it to disk
  pending->insert(pending->end(), st.pending.begin(), st.pending.end());
  st.pending.clear();
  return st.sid;
}

void SessionStore::Release(const std::string& name, std::vector<int32_t> pending, size_t fed,
                           absl::Time now) {
  auto it = stored_.find(name);
  if (it == stored_.end()) return;
  it->second.pending = std::move(pending);
  it->second.tokens_seen += static_cast<long long>(fed);
  it->second.busy = false;
  it->second.last_used = now;
}

void SessionStore::Drop(const std::string& name) {
  auto it = stored_.find(name);
  if (it != stored_.end()) DropStored(it, /*remove_file=*/false);
}

const SessionStore::Stored* SessionStore::Find(const std::string& name) const {
  auto it = stored_.find(name);
  return it == stored_.end() ? nullptr : &it->second;
}

bool SessionStore::InBackend(const std::string& name) const {
  const Stored* st = Find(name);
  return st && st->tier == SessionTier::kBackend;
}

void SessionStore::AddBackendUsage(size_t* bytes, size_t* kv_tokens) const {
  for (const auto& [name, st] : stored_) {
    if (st.tier != SessionTier::kBackend) continue;
    *bytes += backend_->SessionBytes(st.sid);
    *kv_tokens += backend_->SessionKvTokens(st.sid);
  }
}

}  // namespace rwkvx
