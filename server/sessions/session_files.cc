#include "server/sessions/session_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/log.h"

namespace rwkvx {
namespace {

constexpr const char* kSuffix = ".rwkvxss";
constexpr const char* kTempPrefix = ".tmp-";

absl::Status IoError(int err, const char* what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
    return absl::ResourceExhaustedError("the session directory is full: " + msg);
  }
  return absl::UnavailableError("the session directory is not usable: " + msg);
}

bool WriteAll(int fd, const char* p, size_t n, int* err) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

std::string SessionFiles::HexOf(const std::string& name) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : name) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string SessionFiles::FileName(const std::string& name) { return HexOf(name) + kSuffix; }

std::optional<std::string> SessionFiles::NameOf(const std::string& f) {
  const size_t sl = std::strlen(kSuffix);
  if (f.size() <= sl || f.compare(f.size() - sl, sl, kSuffix) != 0) return std::nullopt;
  const size_t n = f.size() - sl;
  if (n % 2 != 0) return std::nullopt;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < n; i += 2) {
    int hi = val(f[i]), lo = val(f[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::string SessionFiles::PathOf(const std::string& name) const {
  return opts_.dir + "/" + FileName(name);
}

absl::StatusOr<std::unique_ptr<SessionFiles>> SessionFiles::Open(SessionFilesOptions opts) {
  if (opts.dir.empty()) return absl::InvalidArgumentError("--session-dir: empty path");
  while (opts.dir.size() > 1 && opts.dir.back() == '/') opts.dir.pop_back();
  if (::mkdir(opts.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("--session-dir ", opts.dir, ": cannot create: ", std::strerror(errno)));
  }
  struct stat sb;
  if (::stat(opts.dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--session-dir ", opts.dir, ": not a directory"));
  }
  if (::access(opts.dir.c_str(), W_OK | X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--session-dir ", opts.dir, ": not writable: ", std::strerror(errno)));
  }
  std::unique_ptr<SessionFiles> f(new SessionFiles(std::move(opts)));
  // Remove the temp files of writes a crash interrupted (their targets are intact):
  // ".tmp-<writer>-<file name>", unless another replica may be writing that session.
  if (DIR* d = ::opendir(f->opts_.dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, kTempPrefix, std::strlen(kTempPrefix)) == 0) {
        const std::string fn = e->d_name;
        auto name = NameOf(fn.substr(fn.rfind('-') + 1));
        if (name && f->opts_.temp_is_stale && !f->opts_.temp_is_stale(*name)) continue;
        std::string p = f->opts_.dir + "/" + e->d_name;
        SLOG(INFO) << "session dir: removing the unfinished write " << p;
        ::unlink(p.c_str());
      }
    }
    ::closedir(d);
  }
  return f;
}

absl::StatusOr<std::vector<SessionFiles::Entry>> SessionFiles::List() const {
  DIR* d = ::opendir(opts_.dir.c_str());
  if (!d) return IoError(errno, "cannot list the session directory");
  std::vector<Entry> out;
  while (dirent* e = ::readdir(d)) {
    std::string fn = e->d_name;
    if (fn.empty() || fn[0] == '.') continue;  // ".", "..", temp files, leases
    auto name = NameOf(fn);
    if (!name) {
      SLOG(WARNING) << "session dir: ignoring " << opts_.dir << "/" << fn << " (not a session file)";
      continue;
    }
    struct stat sb;
    if (::stat((opts_.dir + "/" + fn).c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    Entry en;
    en.name = *name;
    en.bytes = static_cast<size_t>(sb.st_size);
    en.mtime = absl::TimeFromTimespec(sb.st_mtim);
    out.push_back(std::move(en));
  }
  ::closedir(d);
  return out;
}

absl::StatusOr<std::optional<SessionFiles::Entry>> SessionFiles::Stat(const std::string& name) const {
  struct stat sb;
  if (::stat(PathOf(name).c_str(), &sb) != 0) {
    if (errno == ENOENT) return std::optional<Entry>();
    return IoError(errno, "cannot read a saved session");
  }
  if (!S_ISREG(sb.st_mode)) return std::optional<Entry>();
  return std::optional<Entry>(Entry{name, static_cast<size_t>(sb.st_size), absl::TimeFromTimespec(sb.st_mtim)});
}

absl::Status SessionFiles::Write(const std::string& name, std::string_view bytes, const Fence& fence) {
  const std::string final_path = PathOf(name);
  const std::string writer = opts_.writer_id.empty() ? absl::StrCat(::getpid()) : opts_.writer_id;
  const std::string tmp = absl::StrCat(opts_.dir, "/", kTempPrefix, writer, "-", FileName(name));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    SLOG(ERROR) << "session dir: cannot create " << tmp << ": " << std::strerror(err);
    return IoError(err, "cannot create a file");
  }
  int err = 0;
  const char* what = "cannot write";
  size_t half = bytes.size() / 2;
  bool ok = WriteAll(fd, bytes.data(), half, &err);
  if (ok && opts_.testing_write_pause_ms > 0) {
    SLOG(INFO) << "session dir: testing pause mid-write of " << tmp;
    std::this_thread::sleep_for(std::chrono::milliseconds(opts_.testing_write_pause_ms));
  }
  if (ok && !opts_.testing_write_gate.empty()) {
    SLOG(INFO) << "session dir: testing gate holds the write of " << tmp;
    while (::access(opts_.testing_write_gate.c_str(), F_OK) == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (ok) ok = WriteAll(fd, bytes.data() + half, bytes.size() - half, &err);
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    err = errno;
    what = "cannot fsync";
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
    what = "cannot close";
  }
  if (ok && fence) {
    if (absl::Status s = fence(); !s.ok()) {
      SLOG(ERROR) << "session '" << name << "': save refused, " << final_path << " left as it was: " << s;
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (ok && ::rename(tmp.c_str(), final_path.c_str()) != 0) {
    ok = false;
    err = errno;
    what = "cannot rename";
  }
  if (!ok) {
    SLOG(ERROR) << "session dir: " << what << " " << tmp << ": " << std::strerror(err);
    ::unlink(tmp.c_str());
    return IoError(err, what);
  }
  int dfd = ::open(opts_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (::fsync(dfd) != 0) SLOG(WARNING) << "session dir: fsync " << opts_.dir << ": " << std::strerror(errno);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SessionFiles::Read(const std::string& name) const {
  const std::string p = PathOf(name);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError("no saved session named '" + name + "'");
    SLOG(ERROR) << "session dir: cannot open " << p << ": " << std::strerror(err);
    return IoError(err, "cannot read a saved session");
  }
  std::string out;
  struct stat sb;
  if (::fstat(fd, &sb) == 0 && sb.st_size > 0) out.reserve(static_cast<size_t>(sb.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      ::close(fd);
      SLOG(ERROR) << "session dir: cannot read " << p << ": " << std::strerror(err);
      return IoError(err, "cannot read a saved session");
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

absl::StatusOr<std::string> SessionFiles::ReadHead(const std::string& name, size_t max_bytes) const {
  const std::string p = PathOf(name);
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, "cannot read a saved session");
  std::string out(max_bytes, '\0');
  ssize_t r = ::pread(fd, out.data(), max_bytes, 0);
  int err = errno;
  ::close(fd);
  if (r < 0) return IoError(err, "cannot read a saved session");
  out.resize(static_cast<size_t>(r));
  return out;
}

absl::Status SessionFiles::Remove(const std::string& name) {
  const std::string p = PathOf(name);
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
    int err = errno;
    SLOG(ERROR) << "session dir: cannot remove " << p << ": " << std::strerror(err);
    return IoError(err, "cannot remove a saved session");
  }
  return absl::OkStatus();
}

std::optional<std::pair<long long, long long>> SnapshotTokenCount(std::string_view b) {
  if (b.size() < 16) return std::nullopt;
  uint32_t hlen;
  std::memcpy(&hlen, b.data() + 12, 4);
  if (hlen > b.size() - 16) return std::nullopt;
  auto j = nlohmann::json::parse(b.substr(16, hlen), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("tokens_seen") ||
      !j["tokens_seen"].is_number_integer())
    return std::nullopt;
  long long pending = 0;
  if (j.contains("pending_tokens") && j["pending_tokens"].is_array()) {
    pending = static_cast<long long>(j["pending_tokens"].size());
  }
  return std::make_pair(j["tokens_seen"].get<long long>(), pending);
}

}  // namespace rwkvx
