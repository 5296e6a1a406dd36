// SessionFiles: the disk tier of stored sessions (`rwkvx serve --session-dir DIR`). One
// file per session, DIR/<hex of the session name>.rwkvxss, holding the session's snapshot
// bytes (engine/snapshot.h, docs/SNAPSHOT.md). Every write is atomic: a temp file in DIR
// is written, fsync'd, renamed over the old file, and DIR is fsync'd; a crash at any point
// leaves either the previous file or the new one, never a mix (stale temp files are
// removed by Open). Several replicas may share DIR (docs/SESSIONS.md, "Replicas"): temp
// files carry the writer's replica id, Open removes only those its caller calls stale,
// and a write can be fenced (checked just before its rename).
//
// Errors name the cause (errno text) but never the path: they reach clients. The path goes
// to the log. ENOSPC / EDQUOT / EFBIG -> ResourceExhausted; anything else -> Unavailable.
//
// Threads: not thread-safe; the scheduler loop thread is the only user (tests: one thread).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rwkvx {

struct SessionFilesOptions {
  std::string dir;
  std::string writer_id;  // in temp file names (the replica id); "" = the pid
  // Open removes the temp file of an interrupted write of session `name` only if this
  // says so (another replica may be writing it); null = every temp file is stale.
  std::function<bool(const std::string& name)> temp_is_stale;
  // Test-only fault injection (documented in docs/SESSIONS.md): sleep this long after
  // writing the first half of a temp file, so a test can kill -9 mid-write.
  int testing_write_pause_ms = 0;
  // Test-only: while this file exists, every write waits half-way (a test holds a write
  // in flight for as long as it needs, then removes the file).
  std::string testing_write_gate = "";
  // Test-only: the host name this replica's leases give (several replicas on one machine
  // then act as on several hosts: a dead one's leases wait for their expiry).
  std::string testing_replica_host = "";
};

class SessionFiles {
 public:
  struct Entry {
    std::string name;
    size_t bytes = 0;
    absl::Time mtime;
  };

  // Creates DIR if missing (not its parents), checks it is a writable directory, and
  // removes stale temp files of an earlier crash.
  static absl::StatusOr<std::unique_ptr<SessionFiles>> Open(SessionFilesOptions opts);

  // Every saved session (files whose names do not decode are skipped with a log line;
  // dot files, i.e. temp files and leases, silently).
  absl::StatusOr<std::vector<Entry>> List() const;
  // The file of `name`: nullopt if there is none.
  absl::StatusOr<std::optional<Entry>> Stat(const std::string& name) const;
  // `fence` (optional) runs after the temp file is complete and before the rename: an
  // error leaves the old file untouched and is returned.
  using Fence = std::function<absl::Status()>;
  absl::Status Write(const std::string& name, std::string_view bytes, const Fence& fence = nullptr);
  absl::StatusOr<std::string> Read(const std::string& name) const;
  // The first `max_bytes` bytes (the snapshot header, for listing).
  absl::StatusOr<std::string> ReadHead(const std::string& name, size_t max_bytes) const;
  absl::Status Remove(const std::string& name);  // OK if absent
  const std::string& dir() const { return opts_.dir; }

  static std::string HexOf(const std::string& name);     // the name's bytes in hex
  static std::string FileName(const std::string& name);  // "<hex>.rwkvxss"
  static std::optional<std::string> NameOf(const std::string& file_name);

 private:
  explicit SessionFiles(SessionFilesOptions opts) : opts_(std::move(opts)) {}
  std::string PathOf(const std::string& name) const;
  SessionFilesOptions opts_;
};

// {tokens_seen, pending tokens} of a snapshot, read from its header only (for listing
// saved sessions without loading them). nullopt if the header is unreadable.
std::optional<std::pair<long long, long long>> SnapshotTokenCount(std::string_view head);

}  // namespace rwkvx
