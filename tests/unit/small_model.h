// A small random RWKV-X model for engine and scheduler tests: `C` channels in heads of 64,
// `R` RWKV and `M` sparse-attention blocks, vocab 300, and small sparse parameters (chunk
// 16, top-2: full attention up to 32 rows, then the sparse paths) so that every path runs
// within a few hundred tokens. Compression is left to the caller. Plain function; any thread.
#pragma once

#include <memory>
#include <string>

#include "engine/model.h"

namespace rwkvx::testing {

inline std::shared_ptr<Model> SmallSparseModel(int C, int R, int M, uint64_t seed, std::string name) {
  ModelShape s;
  s.vocab = 300; s.n_embd = C; s.head_size = 64; s.n_head = C / 64;
  s.n_rwkv_layer = R; s.n_attn_layer = M; s.ffn_dim = 2 * C;
  s.rank_w = 8; s.rank_a = 8; s.rank_v = 4; s.rank_g = 16;
  auto m = MakeRandomModel(s, seed, std::move(name));
  m->attn.chunk_size = 16;
  m->attn.topk = 2;
  return m;
}

}  // namespace rwkvx::testing
