// SessionLeases: one owner at a time for the sessions of a --session-dir that several
// replicas share (docs/SESSIONS.md, "Replicas"). A session held in a replica's memory has
// a lease file DIR/.lease-<hex of the name> holding the owner's replica id (random, made
// at start), its host and pid (for humans and for the dead-process check below), a
// generation and an expiry (wall clock). The owner renews it from the loop's
// housekeeping and gives it up when the session goes to disk (background save, shutdown)
// or is deleted. Nothing relies on flock: a lease is created with link(2) of a complete
// temp file (exclusive like O_EXCL, and never seen half-written), renewed by rename(2),
// and taken over (expired, or its holder is a process of this host that no longer exists)
// by renaming it to a name of the taker's own, checking that it moved the lease it saw,
// and linking a new one with a higher generation. Generations only grow: a new lease
// is above the previous lease and above the generation recorded in the session's
// snapshot file, so a replica that lost its lease is recognised by its generation.
//
// Handoff: a replica asked for a session another live replica holds writes a request
// file DIR/.handoff-<hex of the name> (Refuse, RequestHandoff) and refuses the call (Unavailable:
// retry). The holder sees the request when it next renews the lease (HandoffRequested)
// and, once the session is idle, saves it and gives the lease up like an idle save does;
// the next call, on whichever replica, loads the file. Release and a fresh Acquire
// remove the request (it was met, or was meant for an earlier holder).
//
// Clocks: expiries are wall-clock times; replicas sharing a directory must have clocks
// that agree to well within the lease time (NTP). The clock is injectable (tests).
//
// Threads: Check and HeldElsewhere only read files and may run on any thread (the
// session writer calls Check before each rename); the rest is called by the scheduler's
// loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rwkvx {

struct LeaseHolder {
  std::string owner;  // replica id
  std::string host;
  long long pid = 0;
  uint64_t generation = 0;
  absl::Time expires;
  std::string raw;  // the file's bytes (a takeover checks it moved exactly these)
};

struct SessionLeaseOptions {
  std::string dir;
  std::string replica_id;  // this replica's id (MakeReplicaId())
  std::string host;        // this replica's host name (hostname; tests may give another)
  absl::Duration ttl = absl::Seconds(30);
  std::function<absl::Time()> clock;  // default absl::Now
  // Whether a holder is known to be dead although its lease has not expired. Default:
  // same host, and its pid is this process's (a restarted replica) or no process.
  std::function<bool(const LeaseHolder&)> holder_dead;
};

class SessionLeases {
 public:
  explicit SessionLeases(SessionLeaseOptions opts);

  // Takes the lease of `name` for this replica when it is free, expired or held by a dead
  // process; `min_generation` is the generation of the session's snapshot file (0 if
  // none). Returns the new generation (> min_generation and > the previous lease's), or
  // this replica's current one if it holds it already. Unavailable (Refuse) when another
  // live replica holds it; Unavailable on I/O errors.
  absl::StatusOr<uint64_t> Acquire(const std::string& name, uint64_t min_generation);
  // Extends this replica's lease of `name` at `generation`. When it had expired but is
  // still this replica's, it is taken again with a new generation (returned). Aborted
  // when it is lost (another replica's lease, or none).
  absl::StatusOr<uint64_t> Renew(const std::string& name, uint64_t generation);
  // OK while this replica holds `name` at `generation` and the lease has not expired;
  // Aborted otherwise (the message says who holds it).
  absl::Status Check(const std::string& name, uint64_t generation) const;
  // Gives the lease up if it is still this replica's at `generation`.
  void Release(const std::string& name, uint64_t generation);
  // The holder when another live replica holds `name` (unexpired, not known dead).
  std::optional<LeaseHolder> HeldElsewhere(const std::string& name) const;
  // Asks the holder of `name` to hand it over (writes the request file unless one is
  // there). Errors are logged only: the caller refuses the call either way.
  void RequestHandoff(const std::string& name);
  // Whether another replica asked for `name` (a request file is there).
  bool HandoffRequested(const std::string& name) const;

  // Asks `h` to hand `name` over (RequestHandoff) and returns the refusal for the client,
  // Unavailable (the call may be retried, on any replica): "session 'NAME' is held by
  // another replica (HOST pid P); it was asked to hand the session over: retry in a moment".
  absl::Status Refuse(const std::string& name, const LeaseHolder& h);
  // Aborted, for this replica's own lease (Renew, Check): it is lost to `h`.
  static absl::Status LostError(const std::string& name, const LeaseHolder& h);
  const std::string& replica_id() const { return opts_.replica_id; }
  absl::Duration ttl() const { return opts_.ttl; }

 private:
  std::string PathOf(const std::string& name) const;
  std::string HandoffPathOf(const std::string& name) const;
  void ClearHandoff(const std::string& name);
  absl::StatusOr<std::optional<LeaseHolder>> Read(const std::string& name) const;
  bool Live(const LeaseHolder& h) const;
  // Writes a lease record of this replica to a temp file; link (create) or rename
  // (replace) it to the lease path. `exists` is set when link found a lease there.
  absl::Status Put(const std::string& name, uint64_t generation, bool replace, bool* exists);
  // Moves the lease file `seen` out of the way; false if the file there was another one
  // (it is put back).
  bool TakeAway(const std::string& name, const LeaseHolder& seen);

  SessionLeaseOptions opts_;
};

// A random replica id: 16 hex digits.
std::string MakeReplicaId();

}  // namespace rwkvx
