// SessionStore: the tiers of stored sessions. A session lives in the backend (ready to run),
// in host memory as snapshot bytes, or on disk (--session-dir) as a snapshot file. Idle
// sessions move down, least recently used first, whenever a tier is over its byte budget;
// a request for a session moves it back into the backend first. Loop thread only.
//
// Nothing is ever dropped to make room: when a move fails (the disk is full or not
// writable) the session stays where it was and the request that needed the room gets the
// error (ResourceExhausted / Unavailable with the reason), with a log line.
//
// Moves that no request waits for (idle sessions, the budgets enforced once a second) are
// background saves (server/sessions/session_writer.h): the session stays usable where it is while
// its file is written, and moves to the disk tier when the write finished and nothing has
// used it since; a failed save leaves it where it is and is retried 30 s later.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/snapshot.h"
#include "engine/status_macros.h"
#include "server/log.h"
#include "server/metrics/metrics.h"
#include "server/sessions/session_lru.h"
#include "server/sessions/session_store.h"

namespace rwkvx {

absl::StatusOr<std::string> SessionStore::SnapshotOf(const std::string& name, const Stored& st) {
  switch (st.tier) {
    case SessionTier::kBackend: {
      auto ex = backend_->ExportSession(st.sid);
      if (!ex.ok()) {
        SLOG(ERROR) << "session '" << name << "': export failed: " << ex.status();
        return absl::InternalError("cannot export the session");
      }
      return SerializeSnapshot(backend_->model(), *ex, &st.pending);
    }
    case SessionTier::kHost:
      if (!st.snapshot) return absl::InternalError("no snapshot bytes");
      return *st.snapshot;
    case SessionTier::kDisk:
      if (!files_) return absl::InternalError("no session dir");
      return files_->Read(name);
  }
  return absl::InternalError("bad tier");
}

absl::Status SessionStore::LoadStored(const std::string& name, Stored& st) {
  if (st.tier == SessionTier::kBackend) return absl::OkStatus();
  const bool take = NeedsLease(st);  // a file: this replica becomes its owner
  RWKVX_RETURN_IF_ERROR(HoldLease(name, st));
  absl::Status s = LoadLeased(name, st);
  if (!s.ok() && take) ReleaseLease(name, st);
  return s;
}

absl::Status SessionStore::LoadLeased(const std::string& name, Stored& st) {
  auto bytes = SnapshotOf(name, st);
  if (!bytes.ok()) return bytes.status();
  std::vector<int32_t> pending;
  auto state = ParseSnapshot(backend_->model(), *bytes, &pending);
  if (!state.ok()) {
    SLOG(ERROR) << "session '" << name << "': its " << SessionTierName(st.tier)
                << " snapshot does not load: " << state.status();
    return absl::DataLossError("the saved session does not load");
  }
  // Room in the backend tier; this session never moves meanwhile (marked busy). A host
  // tier left over budget (its spill to disk failed, logged) does not stop the load: it
  // only shrinks by this.
  const bool was_busy = st.busy;
  st.busy = true;
  absl::Status room = MakeRoom(state->Bytes(), /*host_must_fit=*/false);
  st.busy = was_busy;
  RWKVX_RETURN_IF_ERROR(room);
  auto sid = backend_->ImportSession(*state);
  if (!sid.ok()) return absl::ResourceExhaustedError("no session memory available; retry later");
  st.sid = *sid;
  st.pending = std::move(pending);
  st.tokens_seen = state->tokens_seen;
  st.snapshot.reset();
  st.tier = SessionTier::kBackend;
  st.tier_bytes = 0;
  UpdateTierGauges();
  return absl::OkStatus();
}

absl::Status SessionStore::MoveDown(const std::string& name, Stored& st) {
  if (st.tier == SessionTier::kBackend) {
    auto bytes = SnapshotOf(name, st);
    if (!bytes.ok()) return bytes.status();
    (void)backend_->FreeSession(st.sid);
    st.sid = 0;
    st.pending_count = static_cast<long long>(st.pending.size());
    st.pending.clear();
    st.snapshot = std::make_shared<const std::string>(std::move(*bytes));
    st.tier_bytes = st.snapshot->size();
    st.tier = SessionTier::kHost;
    return absl::OkStatus();
  }
  if (st.tier == SessionTier::kHost) {
    if (!files_) return absl::ResourceExhaustedError("the stored-session memory budgets are used up");
    if (Writing(name)) return absl::UnavailableError("the session is being saved; retry shortly");
    absl::Status w = WriteFile(name, st, *st.snapshot);
    if (!w.ok()) {
      SLOG(ERROR) << "session '" << name << "': cannot move to disk: " << w;
      return w;
    }
    st.snapshot.reset();
    st.tier = SessionTier::kDisk;
    st.tier_bytes = st.saved_bytes;
    ReleaseLease(name, st);  // on disk: any replica may take it
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError("the session disk budget is used up");
}

absl::Status SessionStore::MakeRoom(size_t extra_backend_bytes, bool host_must_fit, bool background) {
  // Backend tier -> host.
  std::vector<LruEntry> in_backend, in_host;
  size_t on_disk = 0;
  for (const auto& [name, st] : stored_) {
    LruEntry e{name, 0, st.last_used, st.busy};
    if (st.tier == SessionTier::kBackend) {
      e.bytes = backend_->SessionBytes(st.sid);
      in_backend.push_back(e);
    }
    if (st.written_here) on_disk += st.saved_bytes;  // this replica's files only
  }
  EvictionPlan pb = PlanEvictions(in_backend, opts_.backend_budget_bytes, extra_backend_bytes);
  for (const auto& n : pb.victims) RWKVX_RETURN_IF_ERROR(MoveDown(n, stored_[n]));
  if (!pb.fits) return absl::ResourceExhaustedError("the stored-session memory budget is used up");
  // Host tier -> disk. Sessions with a background save in flight are on their way out
  // (their bytes leave the tier when it finishes) and count as written (`on_disk`).
  for (const auto& [name, st] : stored_) {
    if (st.write_id != 0) {
      on_disk += st.tier == SessionTier::kHost ? st.tier_bytes : 0;
      continue;
    }
    if (st.tier == SessionTier::kHost) in_host.push_back({name, st.tier_bytes, st.last_used, st.busy});
  }
  EvictionPlan ph = PlanEvictions(in_host, opts_.host_budget_bytes);
  for (const auto& n : ph.victims) {
    Stored& st = stored_[n];
    size_t grows = st.tier_bytes - std::min(st.tier_bytes, st.written_here ? st.saved_bytes : 0);
    absl::Status moved;
    if (files_ && on_disk + grows > opts_.disk_budget_bytes) {
      WarnDiskFull(n, absl::Now());
      moved = absl::ResourceExhaustedError("the session disk budget (--session-disk-bytes) is used up");
    } else if (background && files_) {
      if (st.write_id == 0 && absl::Now() >= st.next_save) StartBackgroundSave(n, st, absl::Now());
      moved = absl::OkStatus();
    } else {
      moved = MoveDown(n, st);
    }
    if (!moved.ok()) {
      UpdateTierGauges();
      return host_must_fit ? moved : absl::OkStatus();
    }
    on_disk += grows;
  }
  UpdateTierGauges();
  return absl::OkStatus();
}

void SessionStore::WarnDiskFull(const std::string& name, absl::Time now) {
  // Once a minute at most: the budgets are enforced every second.
  if (now - last_disk_full_warning_ < absl::Minutes(1)) return;
  last_disk_full_warning_ = now;
  SLOG(WARNING) << "session '" << name << "' cannot move to disk: the disk budget (--session-disk-bytes) is used up";
}

void SessionStore::StartBackgroundSave(const std::string& name, Stored& st, absl::Time now) {
  if (!writer_ || st.write_id != 0 || st.tier == SessionTier::kDisk) return;
  // Each queued save holds a copy of its session (the exported state or the host bytes):
  // at most two at a time (one writing, one waiting), the rest wait for a later pass.
  constexpr int kMaxSavesInFlight = 2;
  if (writer_->InFlight() >= kMaxSavesInFlight) return;
  SessionWriter::Job job;
  job.name = name;
  job.id = next_write_id_++;
  job.owner = {leases_->replica_id(), st.lease_generation};
  job.fence = FenceFor(name, st.lease_generation);
  if (st.tier == SessionTier::kBackend) {
    // The export is the one part that needs the loop thread (the backend is not
    // thread-safe); serialization and the write run on the writer thread.
    auto ex = backend_->ExportSession(st.sid);
    if (!ex.ok()) {
      SLOG(ERROR) << "session '" << name << "': export for a background save failed: " << ex.status();
      st.next_save = now + absl::Seconds(30);
      return;
    }
    job.state = std::move(*ex);
    job.pending = st.pending;
  } else {
    job.bytes = st.snapshot;  // shared, not copied: the host tier keeps serving it meanwhile
  }
  st.write_id = job.id;
  st.write_version = st.version;
  ++writing_names_[name];
  writer_->Submit(std::move(job));
  metrics_->session_saves_in_flight->Set(writer_->InFlight());
}

void SessionStore::FinishBackgroundSaves(absl::Time now) {
  if (!writer_) return;
  std::vector<SessionWriter::Done> done = writer_->TakeDone();
  if (done.empty()) return;
  for (SessionWriter::Done& d : done) {
    if (--writing_names_[d.name] == 0) writing_names_.erase(d.name);
    auto it = stored_.find(d.name);
    if (it == stored_.end() || it->second.write_id != d.id) {
      // Deleted (or deleted and created anew) while the file was written: the file must
      // not bring the old session back at the next start. This replica still holds the
      // lease (kept for the save), so the file is its own.
      if (d.written.ok() && !Writing(d.name) && (it == stored_.end() || !it->second.saved))
        (void)files_->Remove(d.name);
      auto orphan = orphan_leases_.find(d.name);
      if (orphan != orphan_leases_.end() && !Writing(d.name)) {
        leases_->Release(d.name, orphan->second);
        orphan_leases_.erase(orphan);
      }
      continue;
    }
    Stored& st = it->second;
    st.write_id = 0;
    if (!d.written.ok()) {
      SLOG(WARNING) << "session '" << d.name << "': background save failed (" << d.written.status()
                    << "); it stays in the " << SessionTierName(st.tier) << " tier, next try in 30 s";
      st.next_save = now + absl::Seconds(30);
      continue;
    }
    Written(d.name, st, *d.written);
    if (st.version != st.write_version || st.busy) continue;  // used since: the file is older
    if (st.tier == SessionTier::kBackend) {
      (void)backend_->FreeSession(st.sid);
      st.sid = 0;
      st.pending_count = static_cast<long long>(st.pending.size());
      st.pending.clear();
    }
    st.snapshot.reset();
    st.tier = SessionTier::kDisk;
    st.tier_bytes = st.saved_bytes;
    if (st.handoff) {  // counted before the lease goes: the next owner may serve it at once
      st.handoff = false;
      metrics_->session_handoffs->Increment();
      SLOG(INFO) << "session '" << d.name << "': handed over (saved, lease given up)";
    }
    ReleaseLease(d.name, st);  // on disk: any replica may take it
  }
  metrics_->session_saves_in_flight->Set(writer_->InFlight());
  UpdateTierGauges();
}

void SessionStore::DropStored(Map::iterator it, bool remove_file, bool release) {
  if (it->second.tier == SessionTier::kBackend && it->second.sid != 0) {
    (void)backend_->FreeSession(it->second.sid);
  }
  if (remove_file && it->second.saved && files_) (void)files_->Remove(it->first);
  if (it->second.lease_generation != 0 && Writing(it->first)) {
    orphan_leases_[it->first] = it->second.lease_generation;  // until its save ends
  } else if (release) {
    ReleaseLease(it->first, it->second);
  }
  stored_.erase(it);
  UpdateTierGauges();
}

void SessionStore::UpdateTierGauges() {
  double n_host = 0, n_disk = 0, b_host = 0, b_disk = 0;
  for (const auto& [name, st] : stored_) {
    if (st.tier == SessionTier::kHost) {
      ++n_host;
      b_host += static_cast<double>(st.tier_bytes);
    } else if (st.tier == SessionTier::kDisk) {
      ++n_disk;
    }
    if (st.saved) b_disk += static_cast<double>(st.saved_bytes);
  }
  metrics_->sessions_host->Set(n_host);
  metrics_->sessions_disk->Set(n_disk);
  metrics_->session_host_bytes->Set(b_host);
  metrics_->session_disk_bytes->Set(b_disk);
}

void SessionStore::SaveAll() {
  if (!files_) return;
  int saved = 0, failed = 0;
  for (auto& [name, st] : stored_) {
    if (st.ephemeral || st.tier == SessionTier::kDisk) continue;
    auto bytes = SnapshotOf(name, st);
    absl::Status w = bytes.ok() ? WriteFile(name, st, *bytes) : bytes.status();
    if (w.ok()) {
      ++saved;
      ReleaseLease(name, st);  // the next owner loads this file
    } else {
      ++failed;
      SLOG(ERROR) << "shutdown: session '" << name << "' was NOT saved: " << w;
    }
  }
  SLOG(INFO) << "shutdown: saved " << saved << " sessions to " << files_->dir()
             << (failed ? absl::StrCat(" (", failed, " failed)") : "");
}

void SessionStore::ExpireIdle(absl::Time now) {
  // Idle sessions are deleted, except with --session-dir, where they stay on disk (the
  // disk budget bounds them; clients delete them). Then the tier budgets are enforced.
  for (auto it = stored_.begin(); it != stored_.end();) {
    Stored& st = it->second;
    if (st.busy || now - st.last_used < opts_.idle_timeout ||
        (files_ && !st.ephemeral && st.tier == SessionTier::kDisk)) {
      ++it;
      continue;
    }
    if (files_ && !st.ephemeral) {
      // Saved in the background (server/sessions/session_writer.h); the loop keeps stepping.
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

void SessionStore::Shutdown() {
  if (writer_) {  // background saves first: SaveAll must not write a name they write
    writer_->Drain();
    FinishBackgroundSaves(absl::Now());
  }
  SaveAll();  // --session-dir: every live stored session survives the restart
  // A session whose save failed keeps its lease until it expires: no other replica
  // serves its older file as if it were the latest before then.
  while (!stored_.empty()) DropStored(stored_.begin(), /*remove_file=*/false, /*release=*/false);
}

}  // namespace rwkvx
