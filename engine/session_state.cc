#include "engine/session_state.h"

namespace rwkvx {

SessionState SessionState::Zero(const ModelShape& s) {
  SessionState st;
  const size_t C = s.n_embd, N = s.head_size, H = s.n_head;
  st.rwkv.resize(s.n_rwkv_layer);
  for (auto& l : st.rwkv) {
    l.att_prev.assign(C, 0.f);
    l.wkv.assign(H * N * N, 0.f);
    l.ffn_prev.assign(C, 0.f);
  }
  st.attn.resize(s.n_attn_layer);
  for (auto& a : st.attn) {
    a.ct = 0;
    a.ffn_prev.assign(C, 0.f);
  }
  return st;
}

size_t SessionState::Bytes() const {
  size_t n = 0;
  for (const auto& l : rwkv) n += (l.att_prev.size() + l.wkv.size() + l.ffn_prev.size()) * sizeof(float);
  for (const auto& a : attn)
    n += (a.k.capacity() + a.v.capacity() + a.ffn_prev.size()) * sizeof(float);
  return n;
}

size_t SessionState::KvTokens() const {
  size_t n = 0;
  for (const auto& a : attn) n += a.ct;
  return n;
}

}  // namespace rwkvx
