// .safetensors reader and writer. Format: u64 little-endian header length N, N bytes of
// JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {...}}, then the data buffer. Offsets are relative to the buffer and
// must tile it exactly (sorted, contiguous, no gaps, no overlaps), as the reference
// implementation requires. Stateless; thread-safe.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/json_depth.h"
#include "nlohmann/json.hpp"

namespace rwkvx {

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit
constexpr int kMaxJsonDepth = 16;
constexpr size_t kMaxDims = 64;

absl::Status Err(std::string_view name, absl::StatusCode code, std::string_view what) {
  return absl::Status(code, absl::StrCat(std::string(name), ": ", std::string(what)));
}

bool ParseDType(const std::string& s, DType* d) {
  if (s == "F32") *d = DType::kF32;
  else if (s == "F16") *d = DType::kF16;
  else if (s == "BF16") *d = DType::kBF16;
  else return false;
  return true;
}

struct Entry {
  std::string key;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

absl::StatusOr<std::vector<Entry>> ParseHeader(const nlohmann::json& h) {
  if (!h.is_object()) return absl::InvalidArgumentError("header is not a JSON object");
  std::vector<Entry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") continue;
    const nlohmann::json& v = it.value();
    auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "': ", std::string(what)));
    };
    if (!v.is_object()) return bad("entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) return bad("missing string 'dtype'");
    if (sh == v.end() || !sh->is_array()) return bad("missing array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2) return bad("missing 'data_offsets' [begin, end]");
    Entry e;
    e.key = key;
    const std::string& dts = dt->get_ref<const std::string&>();
    if (!ParseDType(dts, &e.dtype)) {
      return absl::UnimplementedError(absl::StrFormat(
          "tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", key, dts.substr(0, 32)));
    }
    if (sh->size() > kMaxDims) return bad("too many dimensions");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape entries must be non-negative integers");
      const uint64_t n = d.get<uint64_t>();
      if (n > static_cast<uint64_t>(INT64_MAX)) return bad("shape entry too large");
      e.shape.push_back(static_cast<int64_t>(n));
    }
    for (const auto& o : *off) {
      if (!o.is_number_unsigned()) return bad("data_offsets must be non-negative integers");
    }
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace

absl::StatusOr<TensorMap> ReadSafetensorsBytes(std::string_view bytes, std::string_view name) {
  using absl::StatusCode;
  if (bytes.size() < 8) return Err(name, StatusCode::kInvalidArgument, "too short for a safetensors header");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
  if (n > bytes.size() - 8) {
    return Err(name, StatusCode::kInvalidArgument,
               absl::StrFormat("safetensors header length %d exceeds the file (%d bytes)", n, bytes.size()));
  }
  if (n > kMaxHeader) return Err(name, StatusCode::kInvalidArgument, "safetensors header larger than 100 MiB");
  if (n < 2 || bytes[8] != '{') {
    return Err(name, StatusCode::kInvalidArgument, "safetensors header does not start with '{'");
  }
  const std::string_view header = bytes.substr(8, n);
  if (!JsonNestingWithin(header, kMaxJsonDepth)) return Err(name, StatusCode::kInvalidArgument, "safetensors header nested too deeply");
  const std::string_view buffer = bytes.substr(8 + n);

  std::vector<Entry> entries;
  try {
    nlohmann::json h = nlohmann::json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
    if (h.is_discarded()) return Err(name, StatusCode::kInvalidArgument, "safetensors header is not valid JSON");
    auto parsed = ParseHeader(h);
    if (!parsed.ok()) return Err(name, parsed.status().code(), std::string(parsed.status().message()));
    entries = std::move(*parsed);
  } catch (const std::exception& ex) {
    return Err(name, StatusCode::kInvalidArgument, absl::StrCat("safetensors header: ", ex.what()));
  }

  // Offsets must tile the buffer exactly.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const Entry& e : entries) {
    if (e.begin != expect || e.end < e.begin) {
      return Err(name, StatusCode::kInvalidArgument,
                 absl::StrFormat("tensor '%s': data_offsets [%d, %d] leave a gap or overlap (expected begin %d)",
                                 e.key, e.begin, e.end, expect));
    }
    if (e.end > buffer.size()) {
      return Err(name, StatusCode::kInvalidArgument,
                 absl::StrFormat("tensor '%s': data_offsets end %d is past the data buffer (%d bytes; truncated?)",
                                 e.key, e.end, buffer.size()));
    }
    uint64_t want = static_cast<uint64_t>(DTypeSize(e.dtype));
    for (int64_t d : e.shape) {
      if (__builtin_mul_overflow(want, static_cast<uint64_t>(d), &want)) {
        return Err(name, StatusCode::kInvalidArgument, absl::StrFormat("tensor '%s': shape overflows", e.key));
      }
    }
    if (want != e.end - e.begin) {
      return Err(name, StatusCode::kInvalidArgument,
                 absl::StrFormat("tensor '%s': shape and dtype need %d bytes but data_offsets give %d", e.key,
                                 want, e.end - e.begin));
    }
    expect = e.end;
  }
  if (expect != buffer.size()) {
    return Err(name, StatusCode::kInvalidArgument,
               absl::StrFormat("data buffer has %d bytes but the tensors cover %d", buffer.size(), expect));
  }
  TensorMap out;
  for (Entry& e : entries) {
    RawTensor t;
    t.dtype = e.dtype;
    t.shape = std::move(e.shape);
    t.bytes.assign(buffer.begin() + e.begin, buffer.begin() + e.end);
    out.insert_or_assign(e.key, std::move(t));
  }
  return out;
}

namespace {

// The 8-byte length prefix plus the JSON header, padded so the data buffer is 8-byte aligned.
absl::StatusOr<std::string> SafetensorsPrefix(const TensorMap& tensors, uint64_t* data_bytes) {
  nlohmann::json h = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [key, t] : tensors) {
    uint64_t want = static_cast<uint64_t>(DTypeSize(t.dtype));
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(want, static_cast<uint64_t>(d), &want)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "': bad shape"));
      }
    }
    if (want != t.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrFormat("tensor '%s': shape needs %d bytes but it holds %d", key,
                                                        want, t.bytes.size()));
    }
    h[key] = {{"dtype", DTypeName(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + want}}};
    offset += want;
  }
  std::string header;
  try {
    header = h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& ex) {
    return absl::InternalError(absl::StrCat("cannot serialise safetensors header: ", ex.what()));
  }
  while ((8 + header.size()) % 8) header.push_back(' ');
  std::string out;
  const uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((n >> (8 * k)) & 0xff));
  *data_bytes = offset;
  return out + header;
}

}  // namespace

absl::StatusOr<std::string> SerializeSafetensors(const TensorMap& tensors) {
  uint64_t data_bytes = 0;
  auto out = SafetensorsPrefix(tensors, &data_bytes);
  if (!out.ok()) return out.status();
  out->reserve(out->size() + data_bytes);
  for (const auto& [key, t] : tensors) {
    if (!t.bytes.empty()) out->append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  return out;
}

absl::Status WriteSafetensorsFile(const std::string& path, const TensorMap& tensors) {
  uint64_t data_bytes = 0;
  auto prefix = SafetensorsPrefix(tensors, &data_bytes);
  if (!prefix.ok()) return absl::Status(prefix.status().code(), absl::StrCat(path, ": ", prefix.status().message()));
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing: ", std::strerror(errno)));
  bool ok = std::fwrite(prefix->data(), 1, prefix->size(), f.get()) == prefix->size();
  for (auto it = tensors.begin(); ok && it != tensors.end(); ++it) {
    const auto& b = it->second.bytes;
    ok = b.empty() || std::fwrite(b.data(), 1, b.size(), f.get()) == b.size();
  }
  if (!ok) return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
  if (std::fclose(f.release()) != 0) return absl::DataLossError(absl::StrCat(path, ": close failed"));
  return absl::OkStatus();
}

}  // namespace rwkvx
