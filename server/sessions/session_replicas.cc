// SessionStore: replicas sharing one --session-dir (docs/SESSIONS.md, "Replicas"). The
// lookup of sessions this replica does not hold, the leases of the sessions it holds
// (server/sessions/session_lease.h) and the stamped, fenced writes of its files. Loop
// thread only (the fences run on the writer thread too; they only read files).
#include <unistd.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/snapshot.h"
#include "engine/status_macros.h"
#include "server/log.h"
#include "server/sessions/session_store.h"

namespace rwkvx {
namespace {

// The generation recorded in the file of `name` (0 if none or unreadable).
uint64_t FileGeneration(const SessionFiles& files, const std::string& name) {
  auto head = files.ReadHead(name, 1 << 16);
  if (!head.ok()) return 0;
  auto o = SnapshotOwnerOf(*head);
  return o ? o->generation : 0;
}

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

}  // namespace

absl::Status SessionStore::OpenDir(SessionFilesOptions fo) {
  SessionLeaseOptions lo;
  lo.dir = fo.dir;
  lo.replica_id = MakeReplicaId();
  lo.host = fo.testing_replica_host.empty() ? HostName() : fo.testing_replica_host;
  lo.ttl = opts_.lease_time;
  leases_ = std::make_unique<SessionLeases>(std::move(lo));
  fo.writer_id = leases_->replica_id();
  // A temp file is stale unless a live replica holds its session (and may be writing it).
  fo.temp_is_stale = [l = leases_.get()](const std::string& name) { return !l->HeldElsewhere(name); };
  auto f = SessionFiles::Open(fo);
  if (!f.ok()) return f.status();
  files_ = std::move(*f);
  writer_ = std::make_unique<SessionWriter>(files_.get(), &backend_->model());
  if (absl::Status s = SyncWithDir(); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("--session-dir: ", s.message()));
  SLOG(INFO) << "session dir " << files_->dir() << ": " << stored_.size() << " saved sessions; replica id "
             << leases_->replica_id() << ", leases of " << absl::ToDoubleSeconds(opts_.lease_time) << " s";
  return absl::OkStatus();
}

absl::Status SessionStore::RegisterFile(const SessionFiles::Entry& e, bool check_whole) {
  long long seen = 0, pending = 0;
  if (check_whole) {
    // Before serving a file another replica wrote: the whole snapshot must load here
    // (this model's fingerprint, the CRC, not truncated).
    auto bytes = files_->Read(e.name);
    if (!bytes.ok()) return bytes.status();
    std::vector<int32_t> pend;
    auto state = ParseSnapshot(backend_->model(), *bytes, &pend);
    if (!state.ok()) {
      SLOG(ERROR) << "session '" << e.name << "': its file in " << files_->dir() << " does not load: " << state.status();
      return absl::DataLossError("the saved session does not load");
    }
    seen = state->tokens_seen;
    pending = static_cast<long long>(pend.size());
  } else if (auto head = files_->ReadHead(e.name, 1 << 16); head.ok()) {
    if (auto n = SnapshotTokenCount(*head)) std::tie(seen, pending) = *n;
  }
  auto [it, added] = stored_.try_emplace(e.name);
  Stored& st = it->second;
  if (added) st.created = e.mtime;
  st.tier = SessionTier::kDisk;
  st.tier_bytes = st.saved_bytes = e.bytes;
  st.saved = true;
  st.written_here = false;
  st.last_used = e.mtime;
  st.file_mtime = e.mtime;
  st.file_checked = check_whole;
  st.tokens_seen = seen;
  st.pending_count = pending;
  UpdateTierGauges();
  return absl::OkStatus();
}

absl::Status SessionStore::SyncWithDir() {
  if (!files_) return absl::OkStatus();
  auto list = files_->List();
  if (!list.ok()) return list.status();
  std::set<std::string> present;
  for (const auto& e : *list) {
    present.insert(e.name);
    auto it = stored_.find(e.name);
    const bool changed = it != stored_.end() && it->second.tier == SessionTier::kDisk &&
                         it->second.lease_generation == 0 &&
                         (it->second.file_mtime != e.mtime || it->second.saved_bytes != e.bytes);
    if (it == stored_.end() || changed) (void)RegisterFile(e, /*check_whole=*/false);
  }
  for (auto it = stored_.begin(); it != stored_.end();) {  // deleted by another replica
    auto next = std::next(it);
    if (it->second.tier == SessionTier::kDisk && it->second.lease_generation == 0 && !present.count(it->first))
      DropStored(it, /*remove_file=*/false, /*release=*/false);
    it = next;
  }
  return absl::OkStatus();
}

absl::StatusOr<SessionStore::Map::iterator> SessionStore::Resolve(const std::string& name) {
  auto it = stored_.find(name);
  if (it != stored_.end() && (!files_ || it->second.tier != SessionTier::kDisk || it->second.lease_generation != 0))
    return it;  // held here
  const absl::Status not_found = absl::NotFoundError("no session named '" + name + "'");
  if (!files_) return not_found;
  // Not held here: the directory is the truth.
  if (auto h = leases_->HeldElsewhere(name)) return leases_->Refuse(name, *h);  // and asks for it
  auto e = files_->Stat(name);
  if (!e.ok()) return e.status();
  if (!e->has_value()) {
    if (it != stored_.end()) DropStored(it, /*remove_file=*/false, /*release=*/false);
    return not_found;
  }
  const Stored* st = it == stored_.end() ? nullptr : &it->second;
  if (!st || !st->file_checked || st->file_mtime != (*e)->mtime || st->saved_bytes != (*e)->bytes) {
    RWKVX_RETURN_IF_ERROR(RegisterFile(**e, /*check_whole=*/true));
  }
  return stored_.find(name);
}

absl::Status SessionStore::ClaimNew(const std::string& name, Stored& st) {
  if (!leases_ || st.ephemeral) return absl::OkStatus();
  if (auto o = orphan_leases_.find(name); o != orphan_leases_.end()) {  // deleted here, save in flight
    st.lease_generation = o->second;
    orphan_leases_.erase(o);
  } else {
    auto gen = leases_->Acquire(name, FileGeneration(*files_, name));
    if (!gen.ok()) return gen.status();
    st.lease_generation = *gen;
  }
  st.lease_renewed = absl::Now();
  return absl::OkStatus();
}

absl::Status SessionStore::HoldLease(const std::string& name, Stored& st) {
  if (!NeedsLease(st)) return absl::OkStatus();
  uint64_t file_gen = FileGeneration(*files_, name);
  auto gen = leases_->Acquire(name, file_gen);
  // The previous owner may have written and let go between the two reads: stay above it.
  if (gen.ok() && FileGeneration(*files_, name) >= *gen) {
    leases_->Release(name, *gen);
    gen = leases_->Acquire(name, FileGeneration(*files_, name));
  }
  if (!gen.ok()) return gen.status();
  st.lease_generation = *gen;
  st.lease_renewed = absl::Now();
  return absl::OkStatus();
}

void SessionStore::ReleaseLease(const std::string& name, Stored& st) {
  if (!leases_ || st.lease_generation == 0) return;
  leases_->Release(name, st.lease_generation);
  st.lease_generation = 0;
}

SessionFiles::Fence SessionStore::FenceFor(const std::string& name, uint64_t generation) const {
  return [leases = leases_.get(), files = files_.get(), name, generation]() -> absl::Status {
    RWKVX_RETURN_IF_ERROR(leases->Check(name, generation));
    const uint64_t on_disk = FileGeneration(*files, name);
    if (on_disk > generation) {
      return absl::AbortedError(absl::StrCat("session '", name, "': its file was written by a newer owner (generation ",
                                             on_disk, " > ", generation, ")"));
    }
    return absl::OkStatus();
  };
}

absl::Status SessionStore::WriteFile(const std::string& name, Stored& st, std::string_view bytes) {
  auto stamped = StampSnapshot(bytes, {leases_->replica_id(), st.lease_generation});
  if (!stamped.ok()) return stamped.status();
  RWKVX_RETURN_IF_ERROR(files_->Write(name, *stamped, FenceFor(name, st.lease_generation)));
  Written(name, st, stamped->size());
  return absl::OkStatus();
}

void SessionStore::Written(const std::string& name, Stored& st, size_t bytes) {
  st.saved = true;
  st.saved_bytes = bytes;
  st.written_here = true;
  st.file_checked = true;
  auto e = files_->Stat(name);
  if (e.ok() && e->has_value()) st.file_mtime = (*e)->mtime;
}

void SessionStore::RenewLeases(absl::Time now) {
  if (!leases_) return;
  const absl::Duration every = std::min(leases_->ttl() / 3, absl::Seconds(1));
  for (auto it = stored_.begin(); it != stored_.end();) {
    Stored& st = it->second;
    auto next = std::next(it);
    if (st.lease_generation != 0 && now - st.lease_renewed >= every) {
      auto gen = leases_->Renew(it->first, st.lease_generation);
      if (gen.ok()) {
        st.lease_generation = *gen;
        st.lease_renewed = now;
        MaybeHandOff(it->first, st, now);
      } else if (gen.status().code() != absl::StatusCode::kAborted) {
        SLOG(WARNING) << "session '" << it->first << "': cannot renew its lease (" << gen.status() << "); retrying";
      } else if (!st.busy) {  // a busy one goes when its request ends (its writes are fenced)
        SLOG(ERROR) << "session '" << it->first << "': this replica lost its lease (" << gen.status()
                    << "); dropped here without saving";
        DropStored(it, /*remove_file=*/false, /*release=*/false);
      }
    }
    it = next;
  }
  if (now - orphans_renewed_ < every) return;
  orphans_renewed_ = now;
  for (auto& [name, generation] : orphan_leases_) {
    auto gen = leases_->Renew(name, generation);
    if (gen.ok()) generation = *gen;  // a lost one: its save fails at the fence
  }
}

void SessionStore::MaybeHandOff(const std::string& name, Stored& st, absl::Time now) {
  // Another replica was asked for it (the proxy's ring moved it, or a client went
  // elsewhere): once idle it is saved in the background and its lease given up when the
  // save lands unused (FinishBackgroundSaves), like an idle save. A use meanwhile makes
  // the file older: the next renewal tries again while the request stands.
  if (st.busy || st.ephemeral || st.write_id != 0 || st.tier == SessionTier::kDisk || now < st.next_save) return;
  if (!leases_->HandoffRequested(name)) return;
  if (!st.handoff) {
    SLOG(INFO) << "session '" << name << "': another replica asked for it; saving it to hand it over";
    st.handoff = true;
  }
  StartBackgroundSave(name, st, now);
}

}  // namespace rwkvx
