// SessionStore: the named (stored) sessions, docs/SESSIONS.md. It owns each session's
// entry and tier (backend memory / host memory as snapshot bytes / a file in
// --session-dir), the files (SessionFiles), the background saves (SessionWriter), idle
// expiry and the tier budgets. The operations are here (session_store.cc); the tiers,
// saves and expiry in session_tiers.cc.
//
// Ownership: owned by the scheduler, which keeps the Backend alive longer. The store owns
// the backend sessions of its entries in the backend tier, and frees them when an entry
// moves down or is dropped. A busy entry (a request or a create/append prefill is
// feeding it) never moves and cannot be deleted, snapshot or forked.
//
// Replicas sharing --session-dir (session_replicas.cc, docs/SESSIONS.md "Replicas"): a
// session held in this replica's memory holds its lease (server/sessions/session_lease.h);
// a session on disk is held by nobody, and any replica asked for it looks it up in the
// directory, takes the lease and loads it. Every file write is stamped with the owner and
// generation and fenced by the lease. A session another live replica holds is Unavailable
// ("... is held by another replica"; that replica is asked to hand it over: it saves the
// session and lets go once idle). Disk entries are a cache of the directory.
//
// Threads: not thread-safe. Only the scheduler's loop thread calls it (it alone drives
// the Backend); the SessionWriter's own thread only writes files it was handed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "server/session_info.h"
#include "server/sessions/session_files.h"
#include "server/sessions/session_lease.h"
#include "server/sessions/session_writer.h"

namespace rwkvx {

class ServerMetrics;

struct SessionStoreOptions {
  int max_stored_sessions = 256;
  size_t backend_budget_bytes = size_t{1} << 30;  // idle sessions past it move to host memory
  size_t host_budget_bytes = size_t{4} << 30;     // past it, to --session-dir
  size_t disk_budget_bytes = size_t{64} << 30;
  absl::Duration idle_timeout = absl::Minutes(10);  // without a session dir: then deleted
  size_t max_snapshot_bytes = size_t{1} << 30;      // largest snapshot a client may upload
  absl::Duration lease_time = absl::Seconds(30);    // --session-lease-seconds
};

class SessionStore {
 public:
  struct Stored {
    SessionId sid = 0;             // tier kBackend only
    std::vector<int32_t> pending;  // accepted tokens not yet fed (kBackend only)
    absl::Time created, last_used;
    bool busy = false;
    // Outside the backend the pending tokens live in the snapshot bytes.
    SessionTier tier = SessionTier::kBackend;
    std::shared_ptr<const std::string> snapshot;  // kHost: the serialized session
    size_t tier_bytes = 0;     // kHost: snapshot size; kDisk: file size
    long long tokens_seen = 0, pending_count = 0;  // cached while not in the backend
    bool saved = false;        // a file holds it (current when tier == kDisk)
    size_t saved_bytes = 0;    // that file's size
    bool ephemeral = false;    // client-held state: never listed, saved or moved to disk
    // Background saves: `version` counts the uses that may have changed the state; a save
    // in flight has write_id != 0 and snapshots write_version.
    uint64_t version = 0, write_version = 0, write_id = 0;
    absl::Time next_save = absl::InfinitePast();  // after a failed save: not before this
    // Shared --session-dir: this replica's lease generation (0 = no lease: the session is
    // only on disk, ephemeral, or there is no dir), when it was last renewed, the file
    // as last seen (a changed file is checked whole again before use) and whether this
    // replica wrote it (the disk budget counts only those).
    uint64_t lease_generation = 0;
    absl::Time lease_renewed;
    absl::Time file_mtime;
    bool file_checked = false, written_here = false;
    bool handoff = false;  // saving because another replica asked for it (handoff)
  };

  // `backend` and `metrics` must outlive the store.
  SessionStore(Backend* backend, SessionStoreOptions opts, ServerMetrics* metrics);
  ~SessionStore();

  // --session-dir: opens it and registers every saved session (tier disk).
  // InvalidArgument if unusable.
  absl::Status OpenDir(SessionFilesOptions files);

  // The operations of the session API. Names of new sessions: 1-128 of [A-Za-z0-9._:-].
  // Create and Append leave the session busy with its new pending tokens in the backend
  // tier: the caller prefills what it will of them (ConsumePending), then EndPrefill.
  // `initial` (may be null = zeros): the state the session starts from (--initial-state).
  absl::Status Create(const std::string& name, std::vector<int32_t> tokens, bool ephemeral,
                      const SessionState* initial = nullptr);
  absl::Status Append(const std::string& name, const std::vector<int32_t>& tokens);
  absl::StatusOr<StoredSessionInfo> Info(const std::string& name);
  // Ephemeral sessions left out. With --session-dir it lists the directory again.
  std::vector<StoredSessionInfo> List();
  absl::Status Delete(const std::string& name);
  // `ephemeral`: the copy is never listed, saved or moved to disk (a working copy).
  absl::StatusOr<StoredSessionInfo> Fork(const std::string& source, const std::string& name,
                                         bool ephemeral = false);
  // The snapshot bytes (engine/snapshot.h); `remove` deletes the session afterwards.
  absl::StatusOr<std::string> Snapshot(const std::string& name, bool remove);
  // A new session from snapshot bytes, kept in host memory until its first use.
  absl::StatusOr<StoredSessionInfo> Restore(const std::string& name, std::string bytes,
                                            bool ephemeral);

  // Create/append prefill: `n` of the pending tokens of busy `name` went into its state.
  void ConsumePending(const std::string& name, size_t n);
  // A cancelled append: keeps only the first `keep` pending tokens of busy `name`.
  void DropPending(const std::string& name, size_t keep);
  // The prefill is over: `name` is idle again. NotFound if it was dropped meanwhile.
  absl::StatusOr<StoredSessionInfo> EndPrefill(const std::string& name, absl::Time now);

  // A generate continuing `name`: loads it into the backend, marks it busy and hands its
  // pending tokens to `*pending` (appended). NotFound, FailedPrecondition (busy), a load
  // error, or InvalidArgument when there is nothing to continue from and no prompt.
  absl::StatusOr<SessionId> Acquire(const std::string& name, bool has_prompt,
                                    std::vector<int32_t>* pending);
  // The generate ended: `fed` tokens went in, `pending` were accepted but not fed.
  void Release(const std::string& name, std::vector<int32_t> pending, size_t fed,
               absl::Time now);
  // After a failed backend step: its state may be inconsistent. Frees it (a saved file,
  // older, stays).
  void Drop(const std::string& name);

  const Stored* Find(const std::string& name) const;
  size_t size() const { return stored_.size(); }
  bool InBackend(const std::string& name) const;
  // Adds the backend bytes and KV tokens of the sessions in the backend tier.
  void AddBackendUsage(size_t* bytes, size_t* kv_tokens) const;

  // Housekeeping, once a second: expires idle sessions (without a session dir) or saves
  // them in the background (with one), then enforces the tier budgets in the background.
  void ExpireIdle(absl::Time now);
  // Applies finished background saves (every loop iteration).
  void FinishBackgroundSaves(absl::Time now);
  // Renews this replica's session leases when due (every loop iteration); a session whose
  // lease another replica took is dropped here without saving.
  void RenewLeases(absl::Time now);
  // Shutdown: waits for background saves, writes every live session to --session-dir,
  // then frees every session.
  void Shutdown();

 private:
  using Map = std::map<std::string, Stored>;
  StoredSessionInfo InfoOf(const std::string& name, const Stored& st) const;
  absl::Status CheckRoomForNew(const std::string& name);
  // Replicas (session_replicas.cc). The entry of `name` (looked up in the directory when
  // not held here): NotFound, or Aborted when another live replica holds it.
  absl::StatusOr<Map::iterator> Resolve(const std::string& name);
  absl::Status SyncWithDir();  // adds the directory's files, drops vanished disk entries
  absl::Status RegisterFile(const SessionFiles::Entry& e, bool check_whole);
  absl::Status ClaimNew(const std::string& name, Stored& st);  // the lease of a new session
  absl::Status HoldLease(const std::string& name, Stored& st);  // before loading / removing
  void ReleaseLease(const std::string& name, Stored& st);
  // Starts the save that hands `name` over when another replica asked for it (renewals).
  void MaybeHandOff(const std::string& name, Stored& st, absl::Time now);
  bool NeedsLease(const Stored& st) const { return leases_ && !st.ephemeral && st.lease_generation == 0; }
  // Writes `bytes` as this replica's file of `name`, stamped and fenced by its lease.
  absl::Status WriteFile(const std::string& name, Stored& st, std::string_view bytes);
  SessionFiles::Fence FenceFor(const std::string& name, uint64_t generation) const;
  void Written(const std::string& name, Stored& st, size_t bytes);  // a write of ours landed
  // Tiers (session_tiers.cc).
  absl::Status LoadStored(const std::string& name, Stored& st);  // into the backend
  absl::Status LoadLeased(const std::string& name, Stored& st);  // (its lease held)
  absl::StatusOr<std::string> SnapshotOf(const std::string& name, const Stored& st);
  absl::Status MoveDown(const std::string& name, Stored& st);
  // Enforces the tier budgets, with room for `extra_backend_bytes` more in the backend.
  // `background` (housekeeping, no request waiting): host -> disk moves become background
  // saves instead of writes on the loop thread.
  absl::Status MakeRoom(size_t extra_backend_bytes, bool host_must_fit = true,
                        bool background = false);
  void StartBackgroundSave(const std::string& name, Stored& st, absl::Time now);
  bool Writing(const std::string& name) const { return writing_names_.count(name) != 0; }
  void WarnDiskFull(const std::string& name, absl::Time now);
  // Frees the entry; its lease is given up (`release`), or kept until its save in flight
  // ends.
  void DropStored(Map::iterator it, bool remove_file, bool release = true);
  void SaveAll();           // shutdown: every live session to disk
  void UpdateTierGauges();  // sessions and bytes in the host and disk tiers

  Backend* backend_;
  const SessionStoreOptions opts_;
  ServerMetrics* metrics_;
  Map stored_;
  std::unique_ptr<SessionFiles> files_;    // --session-dir, or null
  std::unique_ptr<SessionLeases> leases_;  // with files_
  std::map<std::string, uint64_t> orphan_leases_;  // dropped while a save was in flight
  absl::Time orphans_renewed_ = absl::InfinitePast();
  std::unique_ptr<SessionWriter> writer_;  // with files_ (declared after it: destroyed first)
  uint64_t next_write_id_ = 1;
  std::map<std::string, int> writing_names_;  // names with background saves in flight
  absl::Time last_disk_full_warning_ = absl::InfinitePast();
};

}  // namespace rwkvx
