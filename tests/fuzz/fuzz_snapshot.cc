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

// Structured mode: a valid snapshot of a session with data[1] % 8 KV rows, then byte edits
// (4-byte position, 1-byte value) from the rest of the input, so mutations start from a
// well-formed header and payload instead of having to discover the fingerprint.
std::string Structured(const uint8_t* data, size_t size) {
  rwkvx::SessionState st = rwkvx::SessionState::Zero(TheModel()->shape);
  const int rows = size > 1 ? data[1] % 8 : 0;
  for (auto& a : st.attn) {
    a.ct = rows;
    a.k.assign(rows * 64, 0.5f);
    a.v.assign(rows * 64, -0.25f);
  }
  st.tokens_seen = rows;
  std::string b = rwkvx::SerializeSnapshot(*TheModel(), st);
  for (size_t i = 2; i + 5 <= size; i += 5) {
    uint32_t pos;
    std::memcpy(&pos, data + i, 4);
    b[pos % b.size()] = static_cast<char>(data[i + 4]);
  }
  return b;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string b = (size > 0 && (data[0] & 1)) ? Structured(data, size)
                                              : std::string(reinterpret_cast<const char*>(data), size);
  if (b.size() >= 4) {
    const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(b.data()), b.size() - 4);
    std::memcpy(&b[b.size() - 4], &crc, 4);
  }
  auto r = rwkvx::ParseSnapshot(*TheModel(), b);
  if (r.ok()) {
    // Whatever parses must survive a round trip unchanged (the header's JSON spelling may
    // differ from ours, so compare canonical re-serializations, not the input bytes).
    const std::string once = rwkvx::SerializeSnapshot(*TheModel(), *r);
    auto again = rwkvx::ParseSnapshot(*TheModel(), once);
    if (!again.ok() || rwkvx::SerializeSnapshot(*TheModel(), *again) != once) __builtin_trap();
  }
  return 0;
}
