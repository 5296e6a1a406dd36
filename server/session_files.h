// SessionFiles: the disk tier of stored sessions (`rwkvx serve --session-dir DIR`). One
// file per session, DIR/<hex of the session name>.rwkvxss, holding the session's snapshot
// bytes (engine/snapshot.h, docs/SNAPSHOT.md). Every write is atomic: a temp file in DIR
// is written, fsync'd, renamed over the old file, and DIR is fsync'd; a crash at any point
// leaves either the previous file or the new one, never a mix (stale temp files are
// removed by Open).
//
// Errors name the cause (errno text) but never the path: they reach clients. The path goes
// to the log. ENOSPC / EDQUOT / EFBIG -> ResourceExhausted; anything else -> Unavailable.
//
// Threads: not thread-safe; the scheduler loop thread is the only user (tests: one thread).
#pragma once

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
  // Test-only fault injection (documented in docs/SESSIONS.md): sleep this long after
  // writing the first half of a temp file, so a test can kill -9 mid-write.
  int testing_write_pause_ms = 0;
  // Test-only: while this file exists, every write waits half-way (a test holds a write
  // in flight for as long as it needs, then removes the file).
  std::string testing_write_gate = "";
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

  // Every saved session (files whose names do not decode are skipped with a log line).
  absl::StatusOr<std::vector<Entry>> List() const;
  absl::Status Write(const std::string& name, std::string_view bytes);
  absl::StatusOr<std::string> Read(const std::string& name) const;
  // The first `max_bytes` bytes (the snapshot header, for listing).
  absl::StatusOr<std::string> ReadHead(const std::string& name, size_t max_bytes) const;
  absl::Status Remove(const std::string& name);  // OK if absent
  const std::string& dir() const { return opts_.dir; }

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
