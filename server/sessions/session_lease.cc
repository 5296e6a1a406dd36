#include "server/sessions/session_lease.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/log.h"
#include "server/sessions/session_files.h"

namespace rwkvx {
namespace {

absl::Status LeaseIoError(const char* what) {
  return absl::UnavailableError(
      absl::StrCat("the session directory is not usable: ", what, ": ", std::strerror(errno)));
}

bool DefaultHolderDead(const std::string& my_host, const LeaseHolder& h) {
  if (h.host != my_host || h.pid <= 0) return false;
  if (h.pid == ::getpid()) return true;  // an earlier incarnation of this process's pid
  return ::kill(static_cast<pid_t>(h.pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string MakeReplicaId() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrFormat("%016x", v);
}

SessionLeases::SessionLeases(SessionLeaseOptions opts) : opts_(std::move(opts)) {
  if (!opts_.clock) opts_.clock = [] { return absl::Now(); };
  if (!opts_.holder_dead) {
    opts_.holder_dead = [host = opts_.host](const LeaseHolder& h) { return DefaultHolderDead(host, h); };
  }
}

absl::Status SessionLeases::Refuse(const std::string& name, const LeaseHolder& h) {
  RequestHandoff(name);
  return absl::UnavailableError(absl::StrCat("session '", name, "' is held by another replica (", h.host, " pid ",
                                             h.pid, "); it was asked to hand the session over: retry in a moment"));
}

absl::Status SessionLeases::LostError(const std::string& name, const LeaseHolder& h) {
  return absl::AbortedError(absl::StrCat("session '", name, "' is held by another replica (", h.host, " pid ",
                                         h.pid, ")"));
}

std::string SessionLeases::PathOf(const std::string& name) const {
  return absl::StrCat(opts_.dir, "/.lease-", SessionFiles::HexOf(name));
}

std::string SessionLeases::HandoffPathOf(const std::string& name) const {
  return absl::StrCat(opts_.dir, "/.handoff-", SessionFiles::HexOf(name));
}

void SessionLeases::RequestHandoff(const std::string& name) {
  const std::string path = HandoffPathOf(name);
  // Who asked, for humans; the holder only looks for the file. O_EXCL: one request (a
  // request already there is left as it is).
  nlohmann::json j = {{"from", opts_.replica_id}, {"host", opts_.host}, {"pid", static_cast<long long>(::getpid())},
                      {"at_ms", absl::ToUnixMillis(opts_.clock())}};
  const std::string body = j.dump() + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno != EEXIST) SLOG(WARNING) << "session '" << name << "': cannot ask its holder to hand it over: "
                                       << std::strerror(errno);
    return;
  }
  (void)!::write(fd, body.data(), body.size());
  ::close(fd);
}

bool SessionLeases::HandoffRequested(const std::string& name) const {
  return ::access(HandoffPathOf(name).c_str(), F_OK) == 0;
}

void SessionLeases::ClearHandoff(const std::string& name) {
  (void)::unlink(HandoffPathOf(name).c_str());
}

absl::StatusOr<std::optional<LeaseHolder>> SessionLeases::Read(const std::string& name) const {
  const std::string p = PathOf(name);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<LeaseHolder>();
    return LeaseIoError("cannot read a session lease");
  }
  LeaseHolder h;
  char buf[1024];
  ssize_t r = ::read(fd, buf, sizeof(buf));
  struct stat sb;
  const bool have_stat = ::fstat(fd, &sb) == 0;
  ::close(fd);
  if (r < 0) return LeaseIoError("cannot read a session lease");
  h.raw.assign(buf, static_cast<size_t>(r));
  auto j = nlohmann::json::parse(h.raw, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.value("owner", nlohmann::json()).is_string() &&
      j.value("generation", nlohmann::json()).is_number_unsigned() &&
      j.value("expires_ms", nlohmann::json()).is_number_integer()) {
    h.owner = j["owner"].get<std::string>();
    h.generation = j["generation"].get<uint64_t>();
    h.expires = absl::FromUnixMillis(j["expires_ms"].get<int64_t>());
    if (j.value("host", nlohmann::json()).is_string()) h.host = j["host"].get<std::string>();
    if (j.value("pid", nlohmann::json()).is_number_integer()) h.pid = j["pid"].get<long long>();
  } else {
    // Not written by a replica (leases appear whole): expires a lease time after its mtime.
    SLOG(WARNING) << "session dir: unreadable lease " << p;
    h.expires = (have_stat ? absl::FromTimeT(sb.st_mtime) : absl::InfinitePast()) + opts_.ttl;
  }
  return std::optional<LeaseHolder>(std::move(h));
}

bool SessionLeases::Live(const LeaseHolder& h) const {
  return opts_.clock() < h.expires && !opts_.holder_dead(h);
}

absl::Status SessionLeases::Put(const std::string& name, uint64_t generation, bool replace,
                                bool* exists) {
  nlohmann::json j = {{"owner", opts_.replica_id}, {"host", opts_.host},
                      {"pid", static_cast<long long>(::getpid())}, {"generation", generation},
                      {"expires_ms", absl::ToUnixMillis(opts_.clock() + opts_.ttl)}};
  const std::string body = j.dump() + "\n";
  const std::string path = PathOf(name), tmp = absl::StrCat(path, ".new-", opts_.replica_id);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return LeaseIoError("cannot create a session lease");
  const bool wrote = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size());
  const bool synced = wrote && ::fsync(fd) == 0;
  ::close(fd);
  absl::Status s;
  if (!synced) {
    s = LeaseIoError("cannot write a session lease");
  } else if (replace ? ::rename(tmp.c_str(), path.c_str()) != 0 : ::link(tmp.c_str(), path.c_str()) != 0) {
    if (!replace && errno == EEXIST) {
      *exists = true;
    } else {
      s = LeaseIoError("cannot place a session lease");
    }
  }
  ::unlink(tmp.c_str());  // after rename: already gone (ENOENT)
  return s;
}

bool SessionLeases::TakeAway(const std::string& name, const LeaseHolder& seen) {
  const std::string path = PathOf(name), away = absl::StrCat(path, ".gone-", opts_.replica_id);
  if (::rename(path.c_str(), away.c_str()) != 0) return false;  // someone else moved it
  bool same = false;
  if (int fd = ::open(away.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    char buf[1024];
    ssize_t r = ::read(fd, buf, sizeof(buf));
    ::close(fd);
    same = r >= 0 && std::string(buf, static_cast<size_t>(r)) == seen.raw;
  }
  if (!same) (void)::link(away.c_str(), path.c_str());  // a newer lease: put it back
  ::unlink(away.c_str());
  return same;
}

absl::StatusOr<uint64_t> SessionLeases::Acquire(const std::string& name, uint64_t min_generation) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto cur = Read(name);
    if (!cur.ok()) return cur.status();
    uint64_t gen = min_generation + 1;
    if (cur->has_value()) {
      const LeaseHolder& h = **cur;
      if (h.owner == opts_.replica_id && opts_.clock() < h.expires) return h.generation;
      if (h.owner != opts_.replica_id && Live(h)) return Refuse(name, h);
      if (!TakeAway(name, h)) continue;  // it changed meanwhile: look again
      SLOG(INFO) << "session '" << name << "': taking over the lease of " << h.host << " pid " << h.pid
                 << " (generation " << h.generation << ", "
                 << (opts_.clock() >= h.expires ? "expired" : "its process is gone") << ")";
      gen = std::max(gen, h.generation + 1);
    }
    bool exists = false;
    if (absl::Status s = Put(name, gen, /*replace=*/false, &exists); !s.ok()) return s;
    if (!exists) {
      ClearHandoff(name);  // a request left for an earlier holder
      return gen;
    }
  }
  auto cur = Read(name);
  if (cur.ok() && cur->has_value()) return Refuse(name, **cur);
  return absl::UnavailableError("session '" + name + "': its lease is contended; retry");
}

absl::StatusOr<uint64_t> SessionLeases::Renew(const std::string& name, uint64_t generation) {
  auto cur = Read(name);
  if (!cur.ok()) return cur.status();
  if (!cur->has_value() || (*cur)->owner != opts_.replica_id || (*cur)->generation != generation) {
    if (cur->has_value()) return LostError(name, **cur);
    return absl::AbortedError("session '" + name + "': this replica's lease is gone");
  }
  if (opts_.clock() >= (*cur)->expires) {
    // Expired, though nobody took it: take it again like anyone would (a new generation).
    if (!TakeAway(name, **cur)) return absl::AbortedError("session '" + name + "': its lease moved");
    bool exists = false;
    RWKVX_RETURN_IF_ERROR(Put(name, generation + 1, /*replace=*/false, &exists));
    if (exists) return absl::AbortedError("session '" + name + "': another replica took its lease");
    return generation + 1;
  }
  bool unused = false;
  RWKVX_RETURN_IF_ERROR(Put(name, generation, /*replace=*/true, &unused));
  return generation;
}

absl::Status SessionLeases::Check(const std::string& name, uint64_t generation) const {
  auto cur = Read(name);
  if (!cur.ok()) return cur.status();
  if (!cur->has_value()) return absl::AbortedError("session '" + name + "': this replica holds no lease on it");
  const LeaseHolder& h = **cur;
  if (h.owner != opts_.replica_id || h.generation != generation) return LostError(name, h);
  if (opts_.clock() >= h.expires) return absl::AbortedError("session '" + name + "': this replica's lease expired");
  return absl::OkStatus();
}

void SessionLeases::Release(const std::string& name, uint64_t generation) {
  auto cur = Read(name);
  if (!cur.ok() || !cur->has_value() || (*cur)->owner != opts_.replica_id || (*cur)->generation != generation)
    return;
  if (TakeAway(name, **cur)) ClearHandoff(name);  // removes it unless it changed meanwhile; a request is met
}

std::optional<LeaseHolder> SessionLeases::HeldElsewhere(const std::string& name) const {
  auto cur = Read(name);
  if (!cur.ok() || !cur->has_value()) return std::nullopt;
  const LeaseHolder& h = **cur;
  if (h.owner == opts_.replica_id || !Live(h)) return std::nullopt;
  return h;
}

}  // namespace rwkvx
