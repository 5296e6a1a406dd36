// One session as the CPU backend holds it: the RWKV state (plain vectors, copied on fork)
// and, per sparse block, a paged KV store (engine/cpu/kv_pages.h, shared copy-on-write on
// fork) with the block's channel-mix shift state and the running chunk key sums.
// SessionState (engine/session_state.h) stays the contiguous exchange format; ToState /
// FromState convert. Owned by the CPU backend's session table; its one caller thread only.
#pragma once

#include <memory>
#include <vector>

#include "engine/cpu/kv_pages.h"
#include "engine/session_state.h"

namespace rwkvx::cpu {

struct CpuAttnState {
  KvPages kv;                   // cached keys/values, kv.rows() rows (the reference's ct)
  std::vector<float> ffn_prev;  // [C]
  // Float64 sums of the keys of each complete chunk of `chunk_sum_size` rows, [chunks, C]:
  // a cache for the sparse decode's chunk scores, kept up to date incrementally. Cleared
  // when rows are rewritten (compression); never exported.
  std::vector<double> chunk_sum;
  int chunk_sum_size = 0;
};

struct CpuSession {
  std::vector<RwkvLayerState> rwkv;
  std::vector<CpuAttnState> attn;
  long long tokens_seen = 0;

  // A session from the exchange format (contiguous k/v become fresh pages).
  static CpuSession FromState(const SessionState& st, int64_t C, const std::shared_ptr<KvPageAccount>& account);
  SessionState ToState() const;
  // A copy that shares every KV page (the RWKV state and small vectors are copied).
  CpuSession Fork() const { return *this; }

  // Bytes outside the KV pages (RWKV state, shift states, chunk sums).
  size_t FixedBytes() const;
  // FixedBytes plus every KV page this session holds, shared or not.
  size_t Bytes() const;
  size_t KvTokens() const;
};

}  // namespace rwkvx::cpu
