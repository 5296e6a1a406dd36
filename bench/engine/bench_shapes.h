// The released RWKV-X shapes the engine benchmarks build random models of (bench_engine,
// bench_parity): "0.2b" (L12 D768 + 4 sparse), "3.6b" (L32 D2560 + 8 sparse), "tiny".
#pragma once

#include <string>

#include "engine/model.h"

namespace rwkvx {

inline ModelShape BenchShape(const std::string& name) {
  ModelShape s;
  s.vocab = 65536;
  s.head_size = 64;
  if (name == "3.6b") {
    s.n_embd = 2560; s.n_rwkv_layer = 32; s.n_attn_layer = 8;
    s.rank_w = 96; s.rank_a = 96; s.rank_v = 64; s.rank_g = 320;
  } else if (name == "tiny") {
    s.n_embd = 256; s.n_rwkv_layer = 4; s.n_attn_layer = 2; s.vocab = 4096;
    s.rank_w = 64; s.rank_a = 64; s.rank_v = 32; s.rank_g = 128;
  } else {
    s.n_embd = 768; s.n_rwkv_layer = 12; s.n_attn_layer = 4;
    s.rank_w = 64; s.rank_a = 64; s.rank_v = 32; s.rank_g = 128;
  }
  s.n_head = s.n_embd / 64;
  s.ffn_dim = 4 * s.n_embd;
  return s;
}

}  // namespace rwkvx
