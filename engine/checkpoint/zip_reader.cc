// Zip central-directory reader (see zip_reader.h). Every read is bounds-checked.
#include "engine/checkpoint/zip_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rwkvx {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;

uint16_t U16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}
uint32_t U32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}
uint64_t U64(const char* p) { return U32(p) | (static_cast<uint64_t>(U32(p + 4)) << 32); }

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("corrupt zip archive: ", std::string(what)));
}

// True when [off, off+len) lies inside a buffer of `size` bytes (no overflow).
bool InBounds(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

// Applies the zip64 extended-information extra field (id 0x0001) to the fields that the
// central record marked as 0xFFFFFFFF, in the order the spec fixes.
absl::Status ApplyZip64Extra(std::string_view extra, ZipEntry& e, bool need_usize,
                             bool need_csize, bool need_offset) {
  size_t pos = 0;
  while (pos + 4 <= extra.size()) {
    const uint16_t id = U16(extra.data() + pos);
    const uint16_t len = U16(extra.data() + pos + 2);
    pos += 4;
    if (len > extra.size() - pos) return Bad("extra field runs past its record");
    if (id == 0x0001) {
      std::string_view f = extra.substr(pos, len);
      size_t q = 0;
      auto take = [&](uint64_t& out) -> absl::Status {
        if (q + 8 > f.size()) return Bad("zip64 extra field too short");
        out = U64(f.data() + q);
        q += 8;
        return absl::OkStatus();
      };
      if (need_usize) if (auto s = take(e.uncompressed_size); !s.ok()) return s;
      if (need_csize) if (auto s = take(e.compressed_size); !s.ok()) return s;
      if (need_offset) if (auto s = take(e.local_header_offset); !s.ok()) return s;
      return absl::OkStatus();
    }
    pos += len;
  }
  if (need_usize || need_csize || need_offset) {
    return Bad("entry needs a zip64 extra field but has none");
  }
  return absl::OkStatus();
}

uint32_t Crc32Serial(const unsigned char* p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {  // zlib takes uInt lengths
    const uInt k = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = crc32(crc, p, k);
    p += k;
    n -= k;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

uint32_t Crc32(std::string_view data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const uint64_t n = data.size();
  constexpr uint64_t kChunk = 16ull << 20;  // split big entries across threads
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const uint64_t threads = std::min<uint64_t>({hw, 16, n / kChunk});
  if (threads < 2) return Crc32Serial(p, n);
  const uint64_t part = n / threads;
  std::vector<uint32_t> crcs(threads);
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (uint64_t t = 1; t < threads; ++t) {
    const uint64_t begin = t * part, len = t + 1 == threads ? n - begin : part;
    pool.emplace_back([&crcs, p, t, begin, len] { crcs[t] = Crc32Serial(p + begin, len); });
  }
  crcs[0] = Crc32Serial(p, part);
  for (auto& th : pool) th.join();
  uLong crc = crcs[0];
  for (uint64_t t = 1; t < threads; ++t) {
    const uint64_t len = t + 1 == threads ? n - t * part : part;
    crc = crc32_combine(crc, crcs[t], static_cast<z_off_t>(len));
  }
  return static_cast<uint32_t>(crc);
}

absl::StatusOr<ZipArchive> ZipArchive::Open(std::string_view bytes) {
  const uint64_t size = bytes.size();
  if (size < kEocdSize) return Bad("too short for an end-of-central-directory record");

  // The EOCD record sits at the end, followed by a comment of at most 65535 bytes.
  const uint64_t lowest = size > kEocdSize + 0xffff ? size - kEocdSize - 0xffff : 0;
  int64_t eocd = -1;
  for (uint64_t p = size - kEocdSize + 1; p-- > lowest;) {
    if (U32(bytes.data() + p) == kEocdSig) {
      const uint16_t comment_len = U16(bytes.data() + p + 20);
      if (p + kEocdSize + comment_len <= size) {
        eocd = static_cast<int64_t>(p);
        break;
      }
    }
  }
  if (eocd < 0) return Bad("no end-of-central-directory record (truncated file?)");
  const char* e = bytes.data() + eocd;
  if (U16(e + 4) != 0 || U16(e + 6) != 0) return Bad("multi-disk archives are not supported");
  uint64_t count = U16(e + 10);
  uint64_t cd_size = U32(e + 12);
  uint64_t cd_offset = U32(e + 16);

  if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    // Zip64: a locator right before the EOCD points at the zip64 EOCD record.
    if (static_cast<uint64_t>(eocd) < kZip64LocatorSize) return Bad("zip64 locator missing");
    const char* loc = bytes.data() + eocd - kZip64LocatorSize;
    if (U32(loc) != kZip64LocatorSig) return Bad("zip64 locator missing");
    const uint64_t z64 = U64(loc + 8);
    if (!InBounds(z64, kZip64EocdSize, size)) return Bad("zip64 EOCD offset out of range");
    const char* z = bytes.data() + z64;
    if (U32(z) != kZip64EocdSig) return Bad("bad zip64 EOCD signature");
    count = U64(z + 32);
    cd_size = U64(z + 40);
    cd_offset = U64(z + 48);
  }
  if (!InBounds(cd_offset, cd_size, size)) return Bad("central directory out of range");
  if (count > cd_size / kCentralSize) return Bad("entry count larger than the central directory");

  ZipArchive za;
  za.bytes_ = bytes;
  za.entries_.reserve(count);
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (!InBounds(pos, kCentralSize, cd_end)) return Bad("central directory truncated");
    const char* c = bytes.data() + pos;
    if (U32(c) != kCentralSig) return Bad("bad central directory signature");
    ZipEntry ent;
    ent.flags = U16(c + 8);
    ent.method = U16(c + 10);
    ent.crc32 = U32(c + 16);
    ent.compressed_size = U32(c + 20);
    ent.uncompressed_size = U32(c + 24);
    const uint16_t name_len = U16(c + 28);
    const uint16_t extra_len = U16(c + 30);
    const uint16_t comment_len = U16(c + 32);
    ent.local_header_offset = U32(c + 42);
    const uint64_t var_len = uint64_t{name_len} + extra_len + comment_len;
    if (!InBounds(pos + kCentralSize, var_len, cd_end)) return Bad("central directory record truncated");
    ent.name.assign(c + kCentralSize, name_len);
    std::string_view extra(c + kCentralSize + name_len, extra_len);
    const bool nu = ent.uncompressed_size == 0xffffffffu;
    const bool nc = ent.compressed_size == 0xffffffffu;
    const bool no = ent.local_header_offset == 0xffffffffu;
    if (auto s = ApplyZip64Extra(extra, ent, nu, nc, no); !s.ok()) return s;
    pos += kCentralSize + var_len;
    if (!za.by_name_.emplace(ent.name, za.entries_.size()).second) {
      return Bad(absl::StrCat("duplicate entry '", ent.name, "'"));
    }
    za.entries_.push_back(std::move(ent));
  }
  return za;
}

const ZipEntry* ZipArchive::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

absl::StatusOr<std::string_view> ZipArchive::Read(const ZipEntry& e, bool verify_crc) const {
  const uint64_t size = bytes_.size();
  if (e.method != 0) {
    return absl::UnimplementedError(absl::StrFormat(
        "zip entry '%s' is compressed (method %d); only stored entries are supported",
        e.name, e.method));
  }
  if (e.flags & 0x1) return absl::UnimplementedError(absl::StrCat("zip entry '", e.name, "' is encrypted"));
  if (e.compressed_size != e.uncompressed_size) {
    return Bad(absl::StrCat("stored entry '", e.name, "' has different compressed and uncompressed sizes"));
  }
  if (!InBounds(e.local_header_offset, kLocalSize, size)) {
    return Bad(absl::StrCat("local header of '", e.name, "' out of range"));
  }
  const char* l = bytes_.data() + e.local_header_offset;
  if (U32(l) != kLocalSig) return Bad(absl::StrCat("bad local header signature for '", e.name, "'"));
  const uint64_t data = e.local_header_offset + kLocalSize + U16(l + 26) + U16(l + 28);
  if (!InBounds(data, e.compressed_size, size)) {
    return Bad(absl::StrCat("data of '", e.name, "' runs past the end of the file (truncated?)"));
  }
  std::string_view out(bytes_.data() + data, e.compressed_size);
  // torch.save with compute_crc32=False stores 0: nothing to check then.
  if (verify_crc && e.crc32 != 0) {
    const uint32_t crc = Crc32(out);
    if (crc != e.crc32) {
      return absl::DataLossError(absl::StrFormat("CRC-32 mismatch in zip entry '%s' (stored %08x, computed %08x)",
                                                 e.name, e.crc32, crc));
    }
  }
  return out;
}

}  // namespace rwkvx
