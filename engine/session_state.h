// The state of one session in host memory, in float32: what a backend keeps per session,
// and the exchange format for snapshots, forks and CPU<->GPU moves.
// A plain value; owned by whoever holds it (a snapshot, a backend's export). The CPU
// backend keeps its sessions in its own paged form (engine/cpu/cpu_session.h) and
// converts on export/import.
// Threads: none of its own; a value is used by one thread at a time.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/model_config.h"

namespace rwkvx {

struct RwkvLayerState {
  std::vector<float> att_prev;  // [C]
  std::vector<float> wkv;       // [H, N, N] row i = value index, column j = key index
  std::vector<float> ffn_prev;  // [C]
};

struct AttnLayerState {
  // Cached keys/values, row-major [ct, C]. After compression each head's 64 columns may
  // come from different tokens (per-head selection), so rows are not whole tokens.
  std::vector<float> k, v;
  int ct = 0;
  std::vector<float> ffn_prev;  // [C]
};

struct SessionState {
  std::vector<RwkvLayerState> rwkv;  // R entries
  std::vector<AttnLayerState> attn;  // M entries
  long long tokens_seen = 0;         // tokens processed so far

  static SessionState Zero(const ModelShape& s);
  size_t Bytes() const;      // host bytes held
  size_t KvTokens() const;   // sum of ct over sparse blocks
};

}  // namespace rwkvx
