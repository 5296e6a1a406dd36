#include "engine/cpu/cpu_session.h"

namespace rwkvx::cpu {

CpuSession CpuSession::FromState(const SessionState& st, int64_t C, const std::shared_ptr<KvPageAccount>& account) {
  CpuSession s;
  s.rwkv = st.rwkv;
  s.tokens_seen = st.tokens_seen;
  s.attn.resize(st.attn.size());
  for (size_t j = 0; j < st.attn.size(); ++j) {
    const AttnLayerState& a = st.attn[j];
    CpuAttnState& b = s.attn[j];
    b.kv = KvPages(C, account);
    b.kv.Assign(a.k.data(), a.v.data(), a.ct);
    b.ffn_prev = a.ffn_prev;
  }
  return s;
}

SessionState CpuSession::ToState() const {
  SessionState st;
  st.rwkv = rwkv;
  st.tokens_seen = tokens_seen;
  st.attn.resize(attn.size());
  for (size_t j = 0; j < attn.size(); ++j) {
    const CpuAttnState& b = attn[j];
    AttnLayerState& a = st.attn[j];
    const int64_t rows = b.kv.rows();
    const size_t C = b.ffn_prev.size();
    a.ct = static_cast<int>(rows);
    a.k.resize(rows * C);
    a.v.resize(rows * C);
    b.kv.Gather(0, rows, a.k.data(), a.v.data());
    a.ffn_prev = b.ffn_prev;
  }
  return st;
}

size_t CpuSession::FixedBytes() const {
  size_t n = 0;
  for (const auto& l : rwkv) n += (l.att_prev.size() + l.wkv.size() + l.ffn_prev.size()) * sizeof(float);
  for (const auto& a : attn) n += a.ffn_prev.size() * sizeof(float) + a.chunk_sum.size() * sizeof(double);
  return n;
}

size_t CpuSession::Bytes() const {
  size_t n = FixedBytes();
  for (const auto& a : attn) n += a.kv.Bytes();
  return n;
}

size_t CpuSession::KvTokens() const {
  size_t n = 0;
  for (const auto& a : attn) n += a.kv.rows();
  return n;
}

}  // namespace rwkvx::cpu
