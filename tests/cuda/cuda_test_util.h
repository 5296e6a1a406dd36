// Shared helpers of the CUDA tests: every test skips, with the reason, where no GPU is usable.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/backend.h"
#include "engine/model.h"

#define SKIP_WITHOUT_GPU()                                                      \
  do {                                                                          \
    if (const std::string why = ::rwkvx::CudaUnavailableReason(); !why.empty()) \
      GTEST_SKIP() << "CUDA tests need a usable GPU: " << why;                  \
  } while (0)

namespace rwkvx {
// A small RWKV-X shape for random-weight test models: C channels (heads of 64), R RWKV
// blocks, M sparse-attention blocks, vocabulary V.
inline ModelShape Shape(int C, int R, int M, int V) {
  ModelShape s;
  s.vocab = V;
  s.n_embd = C;
  s.head_size = 64;
  s.n_head = C / 64;
  s.n_rwkv_layer = R;
  s.n_attn_layer = M;
  s.ffn_dim = 4 * C;
  s.rank_w = 64;
  s.rank_a = 64;
  s.rank_v = 32;
  s.rank_g = 128;
  return s;
}
}  // namespace rwkvx
