// ReadCheckpointFile: maps the file read-only and dispatches on its first bytes.
// Stateless; thread-safe.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/checkpoint/checkpoint.h"

namespace rwkvx {

namespace {

absl::Status ErrnoStatus(const std::string& path, std::string_view what, int err) {
  const std::string msg = absl::StrCat(path, ": ", std::string(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    default: return absl::UnavailableError(msg);
  }
}

// A read-only view of a whole file: mmap when possible, else an in-memory copy.
class FileBytes {
 public:
  ~FileBytes() {
    if (map_ != nullptr) munmap(map_, size_);
  }
  absl::Status Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ErrnoStatus(path, "cannot open checkpoint", errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(path, "cannot stat checkpoint", err);
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a checkpoint file"));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    }
    if (st.st_size > 0) {
      size_ = static_cast<size_t>(st.st_size);
      void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) {
        map_ = p;
        madvise(map_, size_, MADV_SEQUENTIAL);
        ::close(fd);
        return absl::OkStatus();
      }
    }
    // Fallback (mmap failure): read into memory, never past the size stat reported.
    const size_t limit = static_cast<size_t>(st.st_size);
    size_ = 0;
    char buf[1 << 16];
    while (copy_.size() < limit) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        return ErrnoStatus(path, "cannot read checkpoint", err);
      }
      if (n == 0) break;
      copy_.append(buf, std::min(static_cast<size_t>(n), limit - copy_.size()));
    }
    ::close(fd);
    return absl::OkStatus();
  }
  std::string_view view() const {
    return map_ != nullptr ? std::string_view(static_cast<const char*>(map_), size_) : std::string_view(copy_);
  }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
  std::string copy_;
};

}  // namespace

absl::StatusOr<TensorMap> ReadCheckpointFile(const std::string& path) {
  FileBytes file;
  if (absl::Status s = file.Open(path); !s.ok()) return s;
  const std::string_view bytes = file.view();
  if (bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) {
    return ReadPthBytes(bytes, path);
  }
  // safetensors: u64 header length, then a JSON object.
  if (bytes.size() >= 9 && bytes[8] == '{') return ReadSafetensorsBytes(bytes, path);
  if (bytes.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": file is empty"));
  if (static_cast<unsigned char>(bytes[0]) == 0x80) {  // a bare pickle: torch < 1.6 legacy format
    return absl::UnimplementedError(absl::StrCat(
        path, ": legacy (non-zip) torch.save format is not supported; re-save it with torch >= 1.6"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": not a PyTorch .pth or .safetensors file (unrecognised leading bytes)"));
}

}  // namespace rwkvx
