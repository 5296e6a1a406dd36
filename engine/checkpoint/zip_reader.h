// A minimal, defensive reader for the zip archives PyTorch writes (torch.save): stored
// (uncompressed) entries, optional data descriptors, optional zip64. Reads the central
// directory only; entry bytes are returned as views into the caller's buffer.
//
// Ownership: ZipArchive keeps a string_view of the bytes given to Open(); the caller keeps
// that buffer alive while the archive and any returned views are used.
// Thread-safety: a ZipArchive is immutable after Open(); const methods may be called from
// any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace rwkvx {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored, 8 = deflate (rejected on read)
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
};

// zlib CRC-32 of `data`; large inputs are split across threads and combined.
uint32_t Crc32(std::string_view data);

class ZipArchive {
 public:
  // Parses the end-of-central-directory record(s) and the central directory. Every size
  // and offset is checked against bytes.size(). Errors are InvalidArgument / DataLoss and
  // say what is wrong (without the file name: callers prefix it).
  static absl::StatusOr<ZipArchive> Open(std::string_view bytes);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const ZipEntry* Find(std::string_view name) const;

  // The stored bytes of an entry (method 0 only). Checks the local header, bounds, and,
  // when verify_crc, the CRC-32 against the central directory (a stored CRC of 0 means
  // "not computed", as torch.save writes with compute_crc32=False, and is not checked).
  absl::StatusOr<std::string_view> Read(const ZipEntry& e, bool verify_crc) const;

 private:
  std::string_view bytes_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace rwkvx
