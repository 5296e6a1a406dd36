// ReadPthBytes: PyTorch zip checkpoints (torch.save of a dict of tensors).
//
// <archive>/data.pkl is unpickled by PickleMachine with torch-specific hooks: storages
// come from persistent ids ('storage', torch.XStorage, key, location, numel) backed by the
// zip entry <archive>/data/<key>; tensors come from torch._utils._rebuild_tensor_v2 and
// are materialised into dense row-major RawTensors (views with offsets and arbitrary
// non-negative strides are supported). Stateless; thread-safe.
#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/pickle_reader.h"
#include "engine/checkpoint/zip_reader.h"

namespace rwkvx {

namespace {

// libFuzzer builds skip CRC checks so that mutations reach the parsers behind them.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kVerifyCrc = false;
#else
constexpr bool kVerifyCrc = true;
#endif

constexpr int kMaxDims = 64;
constexpr uint64_t kMaxPickleBytes = 64ull << 20;  // a 10k-tensor state dict pickles to ~2 MB
constexpr const char* kStorageTag = "storage";
constexpr const char* kTensorTag = "tensor";

struct StorageRef {
  std::string type_name;        // e.g. "FloatStorage"
  std::optional<DType> dtype;   // nullopt: a dtype we do not read
  int elem_size = 0;            // bytes per element (known even when unsupported)
  std::string key;              // zip entry data/<key>
  int64_t numel = 0;
};

struct TensorRef {
  size_t storage = 0;
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

// torch.<Name>Storage -> (dtype if supported, element size).
bool LookupStorageType(const std::string& name, std::optional<DType>* dtype, int* elem_size) {
  static const struct { const char* name; int size; std::optional<DType> dtype; } kTypes[] = {
      {"FloatStorage", 4, DType::kF32},   {"HalfStorage", 2, DType::kF16},
      {"BFloat16Storage", 2, DType::kBF16}, {"DoubleStorage", 8, std::nullopt},
      {"LongStorage", 8, std::nullopt},   {"IntStorage", 4, std::nullopt},
      {"ShortStorage", 2, std::nullopt},  {"CharStorage", 1, std::nullopt},
      {"ByteStorage", 1, std::nullopt},   {"BoolStorage", 1, std::nullopt},
      {"ComplexFloatStorage", 8, std::nullopt}, {"ComplexDoubleStorage", 16, std::nullopt},
      {"Float8_e4m3fnStorage", 1, std::nullopt}, {"Float8_e5m2Storage", 1, std::nullopt},
  };
  for (const auto& t : kTypes) {
    if (name == t.name) {
      *dtype = t.dtype;
      *elem_size = t.size;
      return true;
    }
  }
  return false;
}

class PthLoader {
 public:
  PthLoader(std::string_view bytes, const ZipArchive& zip, std::string prefix)
      : bytes_(bytes), zip_(zip), prefix_(std::move(prefix)) {}

  absl::StatusOr<TensorMap> Load(std::string_view pkl);

 private:
  absl::Status FindClass(const std::string& module, const std::string& name);
  absl::StatusOr<PickleId> PersistentLoad(PickleMachine& m, PickleId pid);
  absl::StatusOr<PickleId> Reduce(PickleMachine& m, PickleId fn, PickleId args);
  absl::StatusOr<PickleId> RebuildTensor(PickleMachine& m, const std::vector<PickleId>& a);
  absl::StatusOr<RawTensor> Materialize(const std::string& key, const TensorRef& t);
  absl::StatusOr<std::string_view> StorageBytes(const StorageRef& s);

  std::string_view bytes_;
  const ZipArchive& zip_;
  std::string prefix_;
  std::vector<StorageRef> storages_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, std::string_view> storage_bytes_;  // key -> checked entry bytes
  uint64_t out_budget_ = 0;  // bytes the materialised tensors may still take
};

bool IsOpaque(const PickleValue& v, const char* tag) {
  return v.kind == PickleValue::kOpaque && v.s == tag;
}

// dst[i, j] = src[i*s0 + j*s1] for a [n0, n1] block (strides in elements), in 32x32
// tiles so that transposed sources stay cache-friendly.
template <typename T>
void Copy2D(uint8_t* dst, const char* src, uint64_t n0, uint64_t n1, uint64_t s0, uint64_t s1) {
  constexpr uint64_t kTile = 32;
  if (s1 == 1) {
    for (uint64_t i = 0; i < n0; ++i) std::memcpy(dst + i * n1 * sizeof(T), src + i * s0 * sizeof(T), n1 * sizeof(T));
    return;
  }
  for (uint64_t i0 = 0; i0 < n0; i0 += kTile) {
    const uint64_t ie = std::min(n0, i0 + kTile);
    for (uint64_t j0 = 0; j0 < n1; j0 += kTile) {
      const uint64_t je = std::min(n1, j0 + kTile);
      for (uint64_t i = i0; i < ie; ++i) {
        uint8_t* d = dst + i * n1 * sizeof(T);
        const char* s = src + i * s0 * sizeof(T);
        for (uint64_t j = j0; j < je; ++j) std::memcpy(d + j * sizeof(T), s + j * s1 * sizeof(T), sizeof(T));
      }
    }
  }
}

// Dense row-major copy of a strided view (all sizes > 1; bounds already checked).
template <typename T>
void GatherStrided(uint8_t* dst, const char* base, const std::vector<uint64_t>& size,
                   const std::vector<uint64_t>& stride) {
  const size_t nd = size.size();
  if (nd == 0) {
    std::memcpy(dst, base, sizeof(T));
    return;
  }
  const uint64_t n1 = size[nd - 1], s1 = stride[nd - 1];
  const uint64_t n0 = nd >= 2 ? size[nd - 2] : 1, s0 = nd >= 2 ? stride[nd - 2] : 0;
  const size_t outer = nd >= 2 ? nd - 2 : 0;  // odometer over dims [0, outer)
  std::vector<uint64_t> idx(outer, 0);
  uint64_t off = 0;  // source offset in elements
  for (;;) {
    Copy2D<T>(dst, base + off * sizeof(T), n0, n1, s0, s1);
    dst += n0 * n1 * sizeof(T);
    size_t d = outer;
    for (; d-- > 0;) {
      off += stride[d];
      if (++idx[d] < size[d]) break;
      off -= stride[d] * size[d];
      idx[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;  // every outer index visited
  }
}

absl::Status PthLoader::FindClass(const std::string& module, const std::string& name) {
  if (module == "torch._utils" &&
      (name == "_rebuild_tensor_v2" || name == "_rebuild_tensor" ||
       name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")) {
    return absl::OkStatus();
  }
  if (module == "collections" && name == "OrderedDict") return absl::OkStatus();
  std::optional<DType> d;
  int es;
  if (module == "torch" && LookupStorageType(name, &d, &es)) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrFormat(
      "unsupported pickle global %s.%s (only a dict of tensors can be read)", module, name));
}

absl::StatusOr<PickleId> PthLoader::PersistentLoad(PickleMachine& m, PickleId pid) {
  const PickleValue& p = m.at(pid);
  if (p.kind != PickleValue::kTuple || p.items.size() != 5) {
    return absl::InvalidArgumentError("persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  }
  const PickleValue& tag = m.at(p.items[0]);
  const PickleValue& type = m.at(p.items[1]);
  const PickleValue& key = m.at(p.items[2]);
  const PickleValue& numel = m.at(p.items[4]);
  if (tag.kind != PickleValue::kString || tag.s != "storage") {
    return absl::InvalidArgumentError("persistent id does not start with 'storage'");
  }
  if (type.kind != PickleValue::kGlobal || type.s.rfind("torch.", 0) != 0) {
    return absl::InvalidArgumentError("persistent id storage type is not a torch storage class");
  }
  if (key.kind != PickleValue::kString) return absl::InvalidArgumentError("storage key is not a string");
  if (numel.kind != PickleValue::kInt || numel.i < 0) {
    return absl::InvalidArgumentError("storage numel is not a non-negative int");
  }
  StorageRef s;
  s.type_name = type.s.substr(6);
  if (!LookupStorageType(s.type_name, &s.dtype, &s.elem_size)) {
    return absl::UnimplementedError(absl::StrCat("unknown storage type ", type.s));
  }
  s.key = key.s;
  s.numel = numel.i;
  storages_.push_back(std::move(s));
  PickleValue v;
  v.kind = PickleValue::kOpaque;
  v.s = kStorageTag;
  v.i = static_cast<int64_t>(storages_.size() - 1);
  return m.Add(std::move(v));
}

absl::StatusOr<PickleId> PthLoader::Reduce(PickleMachine& m, PickleId fn, PickleId args) {
  const std::string fname = m.at(fn).s;
  const std::vector<PickleId> a = m.at(args).items;  // copy: m.Add may reallocate
  if (fname == "collections.OrderedDict") {
    if (!a.empty()) return absl::InvalidArgumentError("OrderedDict() with arguments is not supported");
    PickleValue v;
    v.kind = PickleValue::kDict;
    return m.Add(std::move(v));
  }
  if (fname == "torch._utils._rebuild_tensor_v2" || fname == "torch._utils._rebuild_tensor") {
    return RebuildTensor(m, a);
  }
  if (fname == "torch._utils._rebuild_parameter" ||
      fname == "torch._utils._rebuild_parameter_with_state") {
    if (a.size() < 3 || !IsOpaque(m.at(a[0]), kTensorTag)) {
      return absl::InvalidArgumentError("_rebuild_parameter needs (tensor, requires_grad, hooks)");
    }
    return a[0];
  }
  return absl::UnimplementedError(absl::StrCat("calling ", fname, " is not supported"));
}

absl::StatusOr<PickleId> PthLoader::RebuildTensor(PickleMachine& m, const std::vector<PickleId>& a) {
  if (a.size() < 4 || a.size() > 7) {
    return absl::InvalidArgumentError("_rebuild_tensor_v2: wrong number of arguments");
  }
  if (!IsOpaque(m.at(a[0]), kStorageTag)) {
    return absl::InvalidArgumentError("_rebuild_tensor_v2: first argument is not a storage");
  }
  TensorRef t;
  t.storage = static_cast<size_t>(m.at(a[0]).i);
  if (m.at(a[1]).kind != PickleValue::kInt || m.at(a[1]).i < 0) {
    return absl::InvalidArgumentError("_rebuild_tensor_v2: storage_offset is not a non-negative int");
  }
  t.offset = m.at(a[1]).i;
  for (int which = 0; which < 2; ++which) {
    const PickleValue& tup = m.at(a[2 + which]);
    if (tup.kind != PickleValue::kTuple) {
      return absl::InvalidArgumentError("_rebuild_tensor_v2: size/stride is not a tuple");
    }
    if (tup.items.size() > kMaxDims) {
      return absl::InvalidArgumentError(absl::StrCat("tensor has more than ", kMaxDims, " dimensions"));
    }
    auto& out = which == 0 ? t.size : t.stride;
    for (PickleId id : tup.items) {
      const PickleValue& x = m.at(id);
      if (x.kind != PickleValue::kInt || x.i < 0) {
        return absl::InvalidArgumentError("_rebuild_tensor_v2: size/stride entries must be non-negative ints");
      }
      out.push_back(x.i);
    }
  }
  if (t.size.size() != t.stride.size()) {
    return absl::InvalidArgumentError("_rebuild_tensor_v2: size and stride have different lengths");
  }
  tensors_.push_back(std::move(t));
  PickleValue v;
  v.kind = PickleValue::kOpaque;
  v.s = kTensorTag;
  v.i = static_cast<int64_t>(tensors_.size() - 1);
  return m.Add(std::move(v));
}

absl::StatusOr<std::string_view> PthLoader::StorageBytes(const StorageRef& s) {
  auto it = storage_bytes_.find(s.key);
  if (it == storage_bytes_.end()) {
    const std::string entry = absl::StrCat(prefix_, "data/", s.key);
    const ZipEntry* e = zip_.Find(entry);
    if (e == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing zip entry ", entry));
    auto data = zip_.Read(*e, kVerifyCrc);
    if (!data.ok()) return data.status();
    it = storage_bytes_.emplace(s.key, *data).first;
  }
  uint64_t want;
  if (__builtin_mul_overflow(static_cast<uint64_t>(s.numel), static_cast<uint64_t>(s.elem_size), &want) ||
      want != it->second.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "storage '%s' claims %d elements of %s (%d bytes each) but its entry holds %d bytes", s.key,
        s.numel, s.type_name, s.elem_size, it->second.size()));
  }
  return it->second;
}

absl::StatusOr<RawTensor> PthLoader::Materialize(const std::string& key, const TensorRef& t) {
  const StorageRef& s = storages_[t.storage];
  if (!s.dtype) {
    return absl::UnimplementedError(absl::StrFormat(
        "tensor '%s' has storage type torch.%s; only float32, float16 and bfloat16 are supported",
        key, s.type_name));
  }
  auto data = StorageBytes(s);
  if (!data.ok()) return absl::Status(data.status().code(), absl::StrCat("tensor '", key, "': ", data.status().message()));
  const uint64_t es = static_cast<uint64_t>(s.elem_size);
  uint64_t numel = 1, last = static_cast<uint64_t>(t.offset);
  for (size_t d = 0; d < t.size.size(); ++d) {
    const uint64_t n = static_cast<uint64_t>(t.size[d]);
    uint64_t span;
    if (__builtin_mul_overflow(numel, n, &numel) ||
        (n > 0 && (__builtin_mul_overflow(n - 1, static_cast<uint64_t>(t.stride[d]), &span) ||
                   __builtin_add_overflow(last, span, &last)))) {
      return absl::InvalidArgumentError(absl::StrFormat("tensor '%s': shape or strides overflow", key));
    }
  }
  uint64_t out_bytes;
  if (__builtin_mul_overflow(numel, es, &out_bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor '%s': shape overflows", key));
  }
  if (numel > 0 && last >= static_cast<uint64_t>(s.numel)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor '%s' reaches element %d of a storage of %d elements", key, last, s.numel));
  }
  if (out_bytes > out_budget_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor '%s' would expand to %d bytes, more than the checkpoint can hold", key, out_bytes));
  }
  out_budget_ -= out_bytes;

  RawTensor out;
  out.dtype = *s.dtype;
  out.shape = t.size;
  out.bytes.resize(out_bytes);
  if (numel == 0) return out;
  const char* base = data->data() + t.offset * es;
  // Dims of size 1 never move the source pointer: drop them.
  std::vector<uint64_t> size, stride;
  for (size_t d = 0; d < t.size.size(); ++d) {
    if (t.size[d] != 1) {
      size.push_back(static_cast<uint64_t>(t.size[d]));
      stride.push_back(static_cast<uint64_t>(t.stride[d]));
    }
  }
  bool contiguous = true;
  for (size_t d = size.size(), expect = 1; d-- > 0; expect *= size[d]) {
    if (stride[d] != expect) contiguous = false;
  }
  if (contiguous) std::memcpy(out.bytes.data(), base, out_bytes);
  else if (es == 2) GatherStrided<uint16_t>(out.bytes.data(), base, size, stride);
  else GatherStrided<uint32_t>(out.bytes.data(), base, size, stride);
  return out;
}

absl::StatusOr<TensorMap> PthLoader::Load(std::string_view pkl) {
  // Shared storages and zero strides can make the output larger than the file; allow
  // some slack, but never an absurd expansion.
  out_budget_ = 16 * static_cast<uint64_t>(bytes_.size()) + (1 << 20);
  PickleMachine::Hooks hooks;
  hooks.find_class = [this](const std::string& mod, const std::string& name) { return FindClass(mod, name); };
  hooks.persistent_load = [this](PickleMachine& m, PickleId pid) { return PersistentLoad(m, pid); };
  hooks.reduce = [this](PickleMachine& m, PickleId fn, PickleId args) { return Reduce(m, fn, args); };
  hooks.build = [](PickleMachine& m, PickleId obj, PickleId) -> absl::Status {
    // OrderedDict state (e.g. state_dict()._metadata) carries no tensors: ignore it.
    if (m.at(obj).kind == PickleValue::kDict) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat("BUILD on a ", PickleKindName(m.at(obj).kind)));
  };
  PickleMachine m(std::move(hooks));
  auto root = m.Run(pkl);
  if (!root.ok()) {
    return absl::Status(root.status().code(), absl::StrCat("data.pkl: ", root.status().message()));
  }
  const PickleValue& dict = m.at(*root);
  if (dict.kind != PickleValue::kDict) {
    return absl::InvalidArgumentError(absl::StrCat("data.pkl holds a ", PickleKindName(dict.kind),
                                                   ", not a dict of tensors"));
  }
  TensorMap out;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const PickleValue& k = m.at(dict.items[i]);
    const PickleValue& v = m.at(dict.items[i + 1]);
    if (k.kind != PickleValue::kString) {
      return absl::InvalidArgumentError(absl::StrCat("state dict key is a ", PickleKindName(k.kind), ", not a string"));
    }
    if (!IsOpaque(v, kTensorTag)) {
      return absl::InvalidArgumentError(absl::StrFormat("value of '%s' is a %s, not a tensor", k.s,
                                                        PickleKindName(v.kind)));
    }
    auto t = Materialize(k.s, tensors_[static_cast<size_t>(v.i)]);
    if (!t.ok()) return t.status();
    out.insert_or_assign(k.s, std::move(*t));
  }
  return out;
}

absl::Status WithName(std::string_view name, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(std::string(name), ": ", s.message()));
}

}  // namespace

absl::StatusOr<TensorMap> ReadPthBytes(std::string_view bytes, std::string_view name) {
  auto zip = ZipArchive::Open(bytes);
  if (!zip.ok()) return WithName(name, zip.status());
  // The archive folder can be named anything: use the one holding data.pkl.
  const ZipEntry* pkl = nullptr;
  std::string prefix;
  for (const ZipEntry& e : zip->entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.substr(slash + 1) == "data.pkl") {
      pkl = &e;
      prefix = e.name.substr(0, slash + 1);
      break;
    }
  }
  if (pkl == nullptr) {
    return WithName(name, absl::InvalidArgumentError(
                              "zip archive has no <archive>/data.pkl: not a PyTorch checkpoint"));
  }
  if (const ZipEntry* bo = zip->Find(prefix + "byteorder")) {
    auto order = zip->Read(*bo, kVerifyCrc);
    if (!order.ok()) return WithName(name, order.status());
    if (*order != "little") {
      return WithName(name, absl::UnimplementedError(absl::StrCat(
                                "byteorder is '", std::string(order->substr(0, 16)), "'; only little-endian is supported")));
    }
  }
  auto program = zip->Read(*pkl, kVerifyCrc);
  if (!program.ok()) return WithName(name, program.status());
  if (program->size() > kMaxPickleBytes) {
    return WithName(name, absl::InvalidArgumentError(absl::StrFormat(
                              "data.pkl is %d bytes; more than %d is not a state dict", program->size(), kMaxPickleBytes)));
  }
  PthLoader loader(bytes, *zip, prefix);
  auto tensors = loader.Load(*program);
  if (!tensors.ok()) return WithName(name, tensors.status());
  return tensors;
}

}  // namespace rwkvx
