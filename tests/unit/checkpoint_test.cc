// Tests for the checkpoint readers (engine/checkpoint_*.cc, zip_reader, pickle_reader):
// real torch.save fixtures (tests/data, see make_checkpoint_fixtures.py), re-zipped
// variants (data descriptors, zip64, renamed archive folder), hand-written pickles that
// must be rejected, truncation at every length and random byte flips.
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/zip_reader.h"
#include "gtest/gtest.h"

namespace rwkvx {
namespace {

using namespace std::string_literals;

std::string DataPath(const std::string& f) { return std::string(RWKVX_SOURCE_DIR) + "/tests/data/" + f; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ExpectSameTensors(const TensorMap& got, const TensorMap& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, w] : want) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << k;
    EXPECT_EQ(it->second.dtype, w.dtype) << k;
    EXPECT_EQ(it->second.shape, w.shape) << k;
    EXPECT_EQ(it->second.bytes, w.bytes) << k;
  }
}

// ---- a small zip writer (stored entries), for re-packaging and hand-made archives ----
struct ZipFile {
  std::string name, data;
  uint16_t method = 0;
};

void Put16(std::string& s, uint32_t v) { s.push_back(char(v & 0xff)); s.push_back(char((v >> 8) & 0xff)); }
void Put32(std::string& s, uint32_t v) { Put16(s, v & 0xffff); Put16(s, v >> 16); }
void Put64(std::string& s, uint64_t v) { Put32(s, uint32_t(v)); Put32(s, uint32_t(v >> 32)); }

std::string BuildZip(const std::vector<ZipFile>& files, bool data_descriptor, bool zip64) {
  std::string out, cd;
  for (const ZipFile& f : files) {
    const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(f.data.data()), f.data.size());
    const uint64_t offset = out.size();
    std::string lextra;
    if (zip64) { Put16(lextra, 1); Put16(lextra, 16); Put64(lextra, f.data.size()); Put64(lextra, f.data.size()); }
    Put32(out, 0x04034b50); Put16(out, zip64 ? 45 : 20); Put16(out, data_descriptor ? 0x08 : 0);
    Put16(out, f.method); Put32(out, 0);
    Put32(out, data_descriptor ? 0 : crc);
    Put32(out, data_descriptor ? 0 : zip64 ? 0xffffffffu : f.data.size());
    Put32(out, data_descriptor ? 0 : zip64 ? 0xffffffffu : f.data.size());
    Put16(out, f.name.size()); Put16(out, lextra.size());
    out += f.name + lextra + f.data;
    if (data_descriptor) {
      Put32(out, 0x08074b50); Put32(out, crc);
      if (zip64) { Put64(out, f.data.size()); Put64(out, f.data.size()); }
      else { Put32(out, f.data.size()); Put32(out, f.data.size()); }
    }
    std::string cextra;
    if (zip64) { Put16(cextra, 1); Put16(cextra, 24); Put64(cextra, f.data.size()); Put64(cextra, f.data.size()); Put64(cextra, offset); }
    Put32(cd, 0x02014b50); Put16(cd, 45); Put16(cd, zip64 ? 45 : 20); Put16(cd, data_descriptor ? 0x08 : 0);
    Put16(cd, f.method); Put32(cd, 0); Put32(cd, crc);
    Put32(cd, zip64 ? 0xffffffffu : f.data.size()); Put32(cd, zip64 ? 0xffffffffu : f.data.size());
    Put16(cd, f.name.size()); Put16(cd, cextra.size()); Put16(cd, 0); Put16(cd, 0); Put16(cd, 0); Put32(cd, 0);
    Put32(cd, zip64 ? 0xffffffffu : uint32_t(offset));
    cd += f.name + cextra;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  if (zip64) {
    const uint64_t z64 = out.size();
    Put32(out, 0x06064b50); Put64(out, 44); Put16(out, 45); Put16(out, 45); Put32(out, 0); Put32(out, 0);
    Put64(out, files.size()); Put64(out, files.size()); Put64(out, cd.size()); Put64(out, cd_offset);
    Put32(out, 0x07064b50); Put32(out, 0); Put64(out, z64); Put32(out, 1);
  }
  Put32(out, 0x06054b50); Put16(out, 0); Put16(out, 0);
  Put16(out, zip64 ? 0xffff : files.size()); Put16(out, zip64 ? 0xffff : files.size());
  Put32(out, zip64 ? 0xffffffffu : cd.size()); Put32(out, zip64 ? 0xffffffffu : uint32_t(cd_offset));
  Put16(out, 0);
  return out;
}

// Entries of a real archive, with the archive folder renamed.
std::vector<ZipFile> Unzip(const std::string& bytes, const std::string& new_prefix) {
  std::vector<ZipFile> files;
  auto za = ZipArchive::Open(bytes);
  EXPECT_TRUE(za.ok()) << za.status();
  if (!za.ok()) return files;
  for (const ZipEntry& e : za->entries()) {
    auto d = za->Read(e, true);
    EXPECT_TRUE(d.ok()) << d.status();
    files.push_back({new_prefix + e.name.substr(e.name.find('/')), std::string(*d)});
  }
  return files;
}

// ---- a tiny pickle writer for hand-made data.pkl programs ----
struct Pkl {
  std::string s = "\x80\x02";
  Pkl& Op(const std::string& o) { s += o; return *this; }
  Pkl& Str(const std::string& v) { s += 'X'; Put32(s, v.size()); s += v; return *this; }
  Pkl& Int(int64_t v) {
    if (v >= 0 && v < (1ll << 31)) { s += 'J'; Put32(s, uint32_t(v)); }
    else { s += "\x8a\x08"; Put64(s, uint64_t(v)); }
    return *this;
  }
  Pkl& Global(const std::string& m, const std::string& n) { s += "c" + m + "\n" + n + "\n"; return *this; }
  Pkl& Ints(const std::vector<int64_t>& v) { Op("("); for (int64_t x : v) Int(x); return Op("t"); }
  // Pushes _rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False, OrderedDict()).
  Pkl& Tensor(const std::string& key, const std::string& type, int64_t numel, int64_t offset,
              const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    Global("torch._utils", "_rebuild_tensor_v2").Op("((").Str("storage").Global("torch", type).Str(key).Str("cpu");
    Int(numel).Op("tQ").Int(offset).Ints(size).Ints(stride).Op("\x89").Global("collections", "OrderedDict");
    return Op(")RtR");
  }
};

std::string FloatBytes(int n) {
  std::string d(n * 4, '\0');
  for (int i = 0; i < n; ++i) { const float f = float(i); std::memcpy(&d[i * 4], &f, 4); }
  return d;
}

std::string MakePth(const std::string& pkl, const std::vector<ZipFile>& storages = {{"a/data/0", FloatBytes(12)}}) {
  std::vector<ZipFile> files = {{"a/data.pkl", pkl}, {"a/byteorder", "little"}};
  files.insert(files.end(), storages.begin(), storages.end());
  return BuildZip(files, true, false);
}

// A dict {"w": tensor} over a 12-float storage.
std::string OneTensorPkl(int64_t numel, int64_t offset, std::vector<int64_t> size, std::vector<int64_t> stride) {
  return Pkl().Op("}(").Str("w").Tensor("0", "FloatStorage", numel, offset, size, stride).Op("u.").s;
}

TEST(CheckpointPthTest, FixturesMatchTorch) {
  auto want = ReadSafetensorsBytes(ReadAll(DataPath("ckpt_mixed.expected.safetensors")), "expected");
  ASSERT_TRUE(want.ok()) << want.status();
  for (const char* f : {"ckpt_mixed.pth", "ckpt_proto4.pth"}) {
    auto got = ReadCheckpointFile(DataPath(f));
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectSameTensors(*got, *want);
  }
  auto mwant = ReadCheckpointFile(DataPath("ckpt_module.expected.safetensors"));
  ASSERT_TRUE(mwant.ok()) << mwant.status();
  auto mgot = ReadCheckpointFile(DataPath("ckpt_module.pth"));
  ASSERT_TRUE(mgot.ok()) << mgot.status();
  ExpectSameTensors(*mgot, *mwant);
  EXPECT_EQ(mgot->at("0.weight").dtype, DType::kBF16);
  EXPECT_EQ(mgot->at("0.weight").shape, (std::vector<int64_t>{3, 4}));
}

TEST(CheckpointPthTest, UnsupportedDtypeNamesKeyAndType) {
  auto got = ReadCheckpointFile(DataPath("ckpt_int64.pth"));
  ASSERT_EQ(got.status().code(), absl::StatusCode::kUnimplemented) << got.status();
  EXPECT_NE(got.status().message().find("'ids'"), std::string::npos) << got.status();
  EXPECT_NE(got.status().message().find("LongStorage"), std::string::npos) << got.status();
  EXPECT_NE(got.status().message().find("ckpt_int64.pth"), std::string::npos) << got.status();
}

TEST(CheckpointPthTest, RezippedVariantsReadTheSame) {
  const std::string orig = ReadAll(DataPath("ckpt_mixed.pth"));
  auto za = ZipArchive::Open(orig);
  ASSERT_TRUE(za.ok()) << za.status();
  EXPECT_TRUE(za->entries()[0].flags & 0x08) << "torch.save is expected to write data descriptors";
  auto want = ReadPthBytes(orig, "orig");
  ASSERT_TRUE(want.ok()) << want.status();
  for (bool dd : {false, true}) {
    for (bool z64 : {false, true}) {
      const std::string z = BuildZip(Unzip(orig, "some folder-name"), dd, z64);
      auto got = ReadPthBytes(z, "rezipped");
      ASSERT_TRUE(got.ok()) << "dd=" << dd << " zip64=" << z64 << " " << got.status();
      ExpectSameTensors(*got, *want);
    }
  }
}

TEST(CheckpointPthTest, CompressedEntryIsUnimplemented) {
  auto files = Unzip(ReadAll(DataPath("ckpt_mixed.pth")), "a");
  for (auto& f : files) if (f.name == "a/data/0") f.method = 8;
  auto got = ReadPthBytes(BuildZip(files, false, false), "deflated.pth");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnimplemented) << got.status();
  EXPECT_NE(got.status().message().find("compressed"), std::string::npos) << got.status();
}

TEST(CheckpointPthTest, EveryTruncationFails) {
  const std::string orig = ReadAll(DataPath("ckpt_mixed.pth"));
  for (size_t n = 0; n < orig.size(); ++n) {
    auto got = ReadPthBytes(std::string_view(orig).substr(0, n), "trunc.pth");
    ASSERT_FALSE(got.ok()) << "prefix of " << n << " bytes was accepted";
    ASSERT_EQ(got.status().message().rfind("trunc.pth: ", 0), 0u) << got.status();
  }
}

TEST(CheckpointPthTest, RandomByteFlipsNeverCrash) {
  const std::string orig = ReadAll(DataPath("ckpt_mixed.pth"));
  std::mt19937 rng(123);
  int failures = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string b = orig;
    const int flips = 1 + rng() % 4;
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= char(1 + rng() % 255);
    auto got = ReadPthBytes(b, "flip.pth");
    if (!got.ok()) {
      ++failures;
      ASSERT_EQ(got.status().message().rfind("flip.pth: ", 0), 0u) << got.status();
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(CheckpointPthTest, CrcMismatchIsDataLoss) {
  auto files = Unzip(ReadAll(DataPath("ckpt_mixed.pth")), "a");
  std::string z = BuildZip(files, false, false);
  const size_t pos = z.find(files[4].data);  // some storage's bytes
  ASSERT_NE(pos, std::string::npos);
  z[pos] ^= 1;
  auto got = ReadPthBytes(z, "crc.pth");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
}

TEST(CheckpointPthTest, ZeroCrcMeansNotComputed) {
  // torch.save with torch.utils.serialization.config.save.compute_crc32 = False stores 0.
  auto files = Unzip(ReadAll(DataPath("ckpt_mixed.pth")), "a");
  std::string z = BuildZip(files, false, false);
  size_t p = 0;  // zero the CRC field of every central directory record
  while ((p = z.find("PK\x01\x02", p)) != std::string::npos) {
    std::memset(&z[p + 16], 0, 4);
    p += 4;
  }
  auto got = ReadPthBytes(z, "nocrc.pth");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 15u);
}

TEST(CheckpointPthTest, ParallelCrcMatchesZlib) {
  std::string big(40 << 20, '\0');
  std::mt19937 rng(9);
  for (auto& c : big) c = char(rng());
  const uint32_t want = crc32(0, reinterpret_cast<const Bytef*>(big.data()), big.size());
  EXPECT_EQ(Crc32(big), want);
  EXPECT_EQ(Crc32(std::string_view(big).substr(3, (17 << 20) + 5)),
            crc32(0, reinterpret_cast<const Bytef*>(big.data() + 3), (17 << 20) + 5));
  EXPECT_EQ(Crc32(""), 0u);
}

TEST(CheckpointPthTest, HandWrittenPickleViews) {
  // [3,4] transposed view of a 12-float storage, offset 0: element (i, j) = storage[j*3 + i].
  auto got = ReadPthBytes(MakePth(OneTensorPkl(12, 0, {4, 3}, {1, 4})), "t.pth");
  ASSERT_TRUE(got.ok()) << got.status();
  const std::vector<float> v = got->at("w").ToFloat();
  EXPECT_EQ(v, (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  // Zero strides (an expanded view) and a scalar with an offset.
  got = ReadPthBytes(MakePth(OneTensorPkl(12, 5, {2, 3}, {0, 0})), "e.pth");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("w").ToFloat(), std::vector<float>(6, 5.f));
  got = ReadPthBytes(MakePth(OneTensorPkl(12, 11, {}, {})), "s.pth");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("w").ToFloat(), std::vector<float>{11.f});
  // _rebuild_parameter(tensor, requires_grad, hooks).
  Pkl p;
  p.Op("}(").Str("p").Global("torch._utils", "_rebuild_parameter").Op("(");
  p.Tensor("0", "FloatStorage", 12, 0, {12}, {1}).Op("\x88").Global("collections", "OrderedDict").Op(")RtRu.");
  got = ReadPthBytes(MakePth(p.s), "p.pth");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("p").shape, std::vector<int64_t>{12});
}

struct BadCase {
  const char* what;
  std::string pth;
  const char* expect;  // substring of the message
};

TEST(CheckpointPthTest, MalformedInputsAreErrors) {
  const int64_t big = int64_t{1} << 40;
  std::vector<BadCase> cases = {
      {"numel claim", MakePth(OneTensorPkl(big, 0, {big}, {1})), "claims"},
      {"past storage", MakePth(OneTensorPkl(12, 0, {4, 4}, {4, 1})), "reaches element"},
      {"offset past", MakePth(OneTensorPkl(12, 12, {1}, {1})), "reaches element"},
      {"shape overflow", MakePth(OneTensorPkl(12, 0, {big, big, big}, {0, 0, 0})), "overflow"},
      {"stride overflow", MakePth(OneTensorPkl(12, 0, {5, 5}, {INT64_MAX, INT64_MAX})), "overflow"},
      {"huge expand", MakePth(OneTensorPkl(12, 0, {1 << 30, 1 << 20}, {0, 0})), "expand"},
      {"negative", MakePth(OneTensorPkl(12, 0, {-1}, {1})), "non-negative"},
      {"rank mismatch", MakePth(OneTensorPkl(12, 0, {3, 4}, {1})), "different lengths"},
      {"missing storage", MakePth(OneTensorPkl(12, 0, {12}, {1}), {}), "missing zip entry a/data/0"},
      {"underflow", MakePth("\x80\x02R."), "underflow"},
      {"bad opcode", MakePth("\x80\x02}\xff."), "unsupported pickle opcode 0xff"},
      {"evil global", MakePth(Pkl().Global("os", "system").Op(".").s), "os.system"},
      {"memo", MakePth("\x80\x02h\x05."), "memo"},
      {"no stop", MakePth("\x80\x02}"), "without STOP"},
      {"not a dict", MakePth("\x80\x02]q\x00h\x00" "a."s), "list"},  // a list that contains itself
      {"key type", MakePth(Pkl().Op("}(").Int(1).Int(2).Op("u.").s), "key"},
      {"value type", MakePth(Pkl().Op("}(").Str("k").Int(2).Op("u.").s), "not a tensor"},
      {"long1", MakePth("\x80\x02\x8a\x09" + std::string(9, '\x01') + "."), "64 bits"},
      {"string len", MakePth("\x80\x02X\xff\xff\xff\x7f" "abc."), "truncated"},
      {"deep marks", MakePth("\x80\x02" + std::string(200000, '(') + "."), "empty stack"},
      {"deep tuples", MakePth("\x80\x02)" + std::string(100000, '\x85') + "."), "tuple"},
      {"protocol", MakePth("\x80\x09}."), "protocol"},
      {"objects", MakePth("\x80\x02" + std::string(5 << 20, ']') + "."), "objects"},
      {"no pkl", BuildZip({{"a/other", "x"}}, false, false), "data.pkl"},
      {"big endian", BuildZip({{"a/data.pkl", "\x80\x02}."}, {"a/byteorder", "big"}}, false, false), "byteorder"},
      {"not a zip", "PK\x03\x04 this is not a zip archive at all", "end-of-central-directory"},
      {"wrong size", MakePth(OneTensorPkl(11, 0, {11}, {1})), "holds 48 bytes"},
  };
  for (const BadCase& c : cases) {
    auto got = ReadPthBytes(c.pth, "bad.pth");
    ASSERT_FALSE(got.ok()) << c.what;
    EXPECT_EQ(got.status().message().rfind("bad.pth: ", 0), 0u) << c.what << ": " << got.status();
    EXPECT_NE(got.status().message().find(c.expect), std::string::npos) << c.what << ": " << got.status();
  }
}

// ---- safetensors ----

TensorMap SampleTensors() {
  TensorMap m;
  RawTensor a;
  a.dtype = DType::kF32;
  a.shape = {2, 3};
  a.bytes.assign(24, 0);
  for (int i = 0; i < 24; ++i) a.bytes[i] = uint8_t(i * 7);
  m["a.weight"] = a;
  RawTensor h;
  h.dtype = DType::kF16;
  h.shape = {5};
  h.bytes.assign(10, 0x3c);
  m["h"] = h;
  RawTensor b;
  b.dtype = DType::kBF16;
  b.shape = {1, 1, 2};
  b.bytes = {1, 2, 3, 4};
  m["b"] = b;
  RawTensor e;
  e.dtype = DType::kF32;
  e.shape = {0, 3};
  m["empty"] = e;
  return m;
}

std::string MakeSt(const std::string& header, const std::string& data) {
  std::string out;
  Put64(out, header.size());
  return out + header + data;
}

TEST(CheckpointSafetensorsTest, RoundTrip) {
  const TensorMap m = SampleTensors();
  auto bytes = SerializeSafetensors(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->substr(8, 1), "{");
  EXPECT_EQ((8 + uint64_t(uint8_t((*bytes)[0]))) % 8, 0u);  // buffer starts 8-byte aligned
  auto back = ReadSafetensorsBytes(*bytes, "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameTensors(*back, m);
  const std::string path = testing::TempDir() + "/ckpt_roundtrip.safetensors";
  ASSERT_TRUE(WriteSafetensorsFile(path, m).ok());
  auto file = ReadCheckpointFile(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ExpectSameTensors(*file, m);
  std::remove(path.c_str());
}

TEST(CheckpointSafetensorsTest, EveryTruncationFailsAndFlipsNeverCrash) {
  auto bytes = SerializeSafetensors(SampleTensors());
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    auto got = ReadSafetensorsBytes(std::string_view(*bytes).substr(0, n), "t.safetensors");
    ASSERT_FALSE(got.ok()) << n;
    ASSERT_EQ(got.status().message().rfind("t.safetensors: ", 0), 0u) << got.status();
  }
  std::mt19937 rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string b = *bytes;
    for (int k = 0; k < 1 + int(rng() % 3); ++k) b[rng() % b.size()] ^= char(1 + rng() % 255);
    auto got = ReadSafetensorsBytes(b, "f.safetensors");
    if (!got.ok()) {
      ASSERT_EQ(got.status().message().rfind("f.safetensors: ", 0), 0u) << got.status();
    }
  }
}

TEST(CheckpointSafetensorsTest, StrictValidation) {
  const std::string d8(8, '\0');
  struct Case { const char* what; std::string bytes; const char* expect; absl::StatusCode code; };
  const auto kInv = absl::StatusCode::kInvalidArgument;
  std::vector<Case> cases = {
      {"gap", MakeSt(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8), "gap", kInv},
      {"overlap", MakeSt(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8), "overlap", kInv},
      {"past end", MakeSt(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8), "past the data buffer", kInv},
      {"size", MakeSt(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8), "need 12 bytes", kInv},
      {"trailing", MakeSt(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8), "cover 4", kInv},
      {"dtype", MakeSt(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", d8), "'ids' has dtype I64", absl::StatusCode::kUnimplemented},
      {"shape overflow", MakeSt(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", d8), "overflow", kInv},
      {"negative", MakeSt(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8), "non-negative", kInv},
      {"not json", MakeSt("{nope", d8), "not valid JSON", kInv},
      {"not object", MakeSt(R"({"a":5})", d8), "not an object", kInv},
      {"deep", MakeSt("{\"a\":" + std::string(100000, '[') , d8), "nested too deeply", kInv},
      {"header len", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10), "exceeds the file", kInv},
      {"no brace", MakeSt("[]", d8), "does not start with", kInv},
      {"offsets type", MakeSt(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", d8), "data_offsets", kInv},
  };
  for (const Case& c : cases) {
    auto got = ReadSafetensorsBytes(c.bytes, "v.safetensors");
    ASSERT_FALSE(got.ok()) << c.what;
    EXPECT_EQ(got.status().code(), c.code) << c.what << ": " << got.status();
    EXPECT_NE(got.status().message().find(c.expect), std::string::npos) << c.what << ": " << got.status();
    EXPECT_EQ(got.status().message().rfind("v.safetensors: ", 0), 0u) << got.status();
  }
  // __metadata__ is ignored; header padding with spaces is fine.
  auto ok = ReadSafetensorsBytes(
      MakeSt(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}   )", d8), "m");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 1u);
  EXPECT_EQ(ok->at("a").shape, (std::vector<int64_t>{2, 2}));
}

TEST(CheckpointFileTest, ErrorsNameThePath) {
  const std::string missing = DataPath("does_not_exist.pth");
  auto got = ReadCheckpointFile(missing);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find(missing), std::string::npos) << got.status();

  got = ReadCheckpointFile(std::string(RWKVX_SOURCE_DIR) + "/tests/data");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();

  const std::string junk = testing::TempDir() + "/ckpt_junk.bin";
  { std::ofstream(junk) << "hello, this is not a checkpoint"; }
  got = ReadCheckpointFile(junk);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("not a PyTorch .pth or .safetensors file"), std::string::npos);
  EXPECT_NE(got.status().message().find(junk), std::string::npos);
  { std::ofstream(junk, std::ios::trunc) << "\x80\x02\x8a\x0a legacy pickle"; }
  got = ReadCheckpointFile(junk);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnimplemented) << got.status();
  EXPECT_NE(got.status().message().find("legacy"), std::string::npos) << got.status();
  { std::ofstream(junk, std::ios::trunc); }
  got = ReadCheckpointFile(junk);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
  std::remove(junk.c_str());

  got = ReadCheckpointFile("/dev/null");
  EXPECT_FALSE(got.ok());
}

}  // namespace
}  // namespace rwkvx
