// libFuzzer target: ParseSnapshot on arbitrary bytes against a fixed small model. The
// checksum is recomputed over the input first (in fuzzing builds) so mutations reach the
// header and payload checks.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "engine/snapshot.h"

namespace {
std::shared_ptr<rwkvx::Model> TheModel() {
  static auto m = [] {
    rwkvx::ModelShape s;
    s.vocab = 16; s.n_embd = 64; s.head_size = 64; s.n_rwkv_layer = 1; s.n_attn_layer = 1;
    s.ffn_dim = 64; s.rank_w = 4; s.rank_a = 4; s.rank_v = 4; s.rank_g = 4;
    return rwkvx::MakeRandomModel(s, 1, "fuzz");
  }();
  return m;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string b(reinterpret_cast<const char*>(data), size);
  if (b.size() >= 4) {
    const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(b.data()), b.size() - 4);
    std::memcpy(&b[b.size() - 4], &crc, 4);
  }
  auto r = rwkvx::ParseSnapshot(*TheModel(), b);
  if (r.ok()) {
    // Whatever parses must re-serialize to the same bytes.
    if (rwkvx::SerializeSnapshot(*TheModel(), *r) != b) __builtin_trap();
  }
  return 0;
}
