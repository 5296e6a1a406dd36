// Sparse-attention block on the CPU, float32, following the official package's
// CausalSparseAttention (forward_one / forward_seq / update_kv_cache); docs/MODEL.md.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "engine/cpu/attention.h"
#include "engine/cpu/cpu_session.h"
#include "engine/cpu/forward.h"
#include "engine/cpu/ops.h"

namespace rwkvx::cpu {
namespace {

// KV-cache compression: keeps the last `window` rows and, per head, the `keep` older rows
// with the largest vote (descending vote order), voting with the nq query rows Q. The kept
// rows go to fresh pages (pages shared with a forked session stay untouched).
void CompressCache(CpuAttnState& st, const float* Q, int64_t nq, const SparseAttnConfig& cfg,
                   int64_t C, int64_t H, int64_t N) {
  const int64_t KT = st.kv.rows();
  if (cfg.min_kv_cache_size >= KT) return;
  const int64_t past = KT - cfg.kv_cache_window_size;
  if (past <= 0) return;
  const int64_t keep = std::min<int64_t>(cfg.min_kv_cache_size - cfg.kv_cache_window_size, past);
  std::vector<float> vote(H * past);
  {
    std::vector<float> K(past * C);
    st.kv.Gather(0, past, K.data(), nullptr);
    CompressionVotes(Q, nq, K.data(), past, vote.data(), C, H, N);
  }
  const int64_t new_ct = keep + (KT - past);
  std::vector<float> nk(new_ct * C), nv(new_ct * C);
  std::vector<int64_t> idx(past);
  for (int64_t h = 0; h < H; ++h) {
    const float* vh = vote.data() + h * past;
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), [&](int64_t a, int64_t b) {
      return vh[a] > vh[b] || (vh[a] == vh[b] && a < b);
    });
    for (int64_t r = 0; r < keep; ++r) {
      std::memcpy(&nk[r * C + h * N], st.kv.KRow(idx[r]) + h * N, N * sizeof(float));
      std::memcpy(&nv[r * C + h * N], st.kv.VRow(idx[r]) + h * N, N * sizeof(float));
    }
  }
  st.kv.Gather(past, KT, &nk[keep * C], &nv[keep * C]);
  st.kv.Assign(nk.data(), nv.data(), new_ct);
  st.chunk_sum.clear();  // rows were rewritten
}

// Brings the running per-chunk key sums up to date with the complete chunks of the cache
// (O(new rows * C) per call instead of a full pass over the cache every decode step).
void UpdateChunkSums(CpuAttnState& st, int64_t B, int64_t C) {
  if (st.chunk_sum_size != B) {
    st.chunk_sum.clear();
    st.chunk_sum_size = static_cast<int>(B);
  }
  const int64_t have = st.chunk_sum.size() / C, complete = st.kv.rows() / B;
  for (int64_t c = have; c < complete; ++c) {
    st.chunk_sum.resize((c + 1) * C, 0.0);
    double* sum = &st.chunk_sum[c * C];
    for (int64_t r = c * B; r < (c + 1) * B; ++r) {
      const float* kr = st.kv.KRow(r);
      for (int64_t i = 0; i < C; ++i) sum[i] += kr[i];
    }
  }
}

bool ShouldCompress(const SparseAttnConfig& cfg, int64_t ct) {
  return cfg.max_kv_cache_size > 0 && ct > cfg.max_kv_cache_size;
}

// One decode token: q, k, v [C]; y [C] receives the attention output (before Wo).
void DecodeOne(CpuAttnState& st, const float* q, const float* k, const float* v, float* y,
               const SparseAttnConfig& cfg, int64_t C, int64_t H, int64_t N) {
  if (ShouldCompress(cfg, st.kv.rows())) CompressCache(st, q, 1, cfg, C, H, N);
  const int64_t CT = st.kv.rows(), B = cfg.chunk_size;
  std::vector<KvSpan> spans;
  if (CT <= cfg.Threshold() || cfg.decode_mode == AttnDecodeMode::kFull) {
    st.kv.Spans(0, CT, &spans);
  } else {
    const int64_t rem = CT % B, nchunks = CT / B;
    UpdateChunkSums(st, B, C);
    std::vector<double> score(nchunks);
    for (int64_t c = 0; c < nchunks; ++c) {
      const double* sum = &st.chunk_sum[c * C];
      double s = 0;
      for (int64_t i = 0; i < C; ++i) s += q[i] * static_cast<float>(sum[i] / B);  // q . mean
      score[c] = s;
    }
    const int64_t kk = std::min<int64_t>(cfg.topk, nchunks);
    std::vector<int64_t> idx(nchunks);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int64_t a, int64_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
    for (int64_t i = 0; i < kk; ++i) st.kv.Spans(idx[i] * B, (idx[i] + 1) * B, &spans);
    if (rem > 0) st.kv.Spans(CT - rem, CT, &spans);
  }
  spans.push_back({k, v, 1});  // the current token
  int64_t nk = 0;
  for (const auto& sp : spans) nk += sp.rows;
  Attend(q, 1, spans, nk, y, C, H, N);
  st.kv.Append(k, v, 1);
}

// T > 1 prefill tokens: u (ln1 output), q, k, v [T, C]; y [T, C] receives the output.
void Prefill(CpuAttnState& st, const float* u, const float* q, const float* k, const float* v,
             float* y, int64_t T, const SparseAttnConfig& cfg, int64_t C, int64_t H, int64_t N) {
  if (ShouldCompress(cfg, st.kv.rows())) CompressCache(st, u, T, cfg, C, H, N);  // votes with u (reference quirk)
  const int64_t CT = st.kv.rows();
  if (T + CT <= cfg.Threshold() || cfg.prefill_mode == AttnPrefillMode::kFull) {
    // Every new token sees the whole cache and, causally, the new tokens.
    std::vector<KvSpan> spans;
    st.kv.Spans(0, CT, &spans);
    spans.push_back({k, v, T});
    Attend(q, T, spans, CT + 1, y, C, H, N);
  } else {
    // Chunk-local: pieces of B from the first new token, causal within each piece.
    for (int64_t p = 0; p < T; p += cfg.chunk_size) {
      const int64_t len = std::min<int64_t>(cfg.chunk_size, T - p);
      Attend(q + p * C, len, {{k + p * C, v + p * C, len}}, 1, y + p * C, C, H, N);
    }
  }
  st.kv.Append(k, v, T);
}

}  // namespace

void AttnBlockForward(const Model& m, const HalfMats& hm, int j, const std::vector<SeqSlice>& seqs, float* X,
                      int64_t ntot) {
  const AttnBlockWeights& w = m.attn_blocks[j];
  const int64_t C = m.shape.n_embd, H = m.shape.n_head, N = m.shape.head_size;
  const size_t NC = ntot * C;
  std::vector<float> u(NC), q(NC), k(NC), v(NC), y(NC);
  for (int64_t r = 0; r < ntot; ++r) LayerNorm(X + r * C, w.ln1_w.data(), w.ln1_b.data(), u.data() + r * C, C);
  Linear(u.data(), Pick(hm.r, w.Wq), q.data(), ntot, C, C);
  Linear(u.data(), Pick(hm.k, w.Wk), k.data(), ntot, C, C);
  Linear(u.data(), Pick(hm.v, w.Wv), v.data(), ntot, C, C);
  for (const auto& s : seqs) {
    CpuAttnState& st = s.state->attn[j];
    const size_t o = s.row0 * C;
    if (s.T == 1)
      DecodeOne(st, &q[o], &k[o], &v[o], &y[o], m.attn, C, H, N);
    else
      Prefill(st, &u[o], &q[o], &k[o], &v[o], &y[o], s.T, m.attn, C, H, N);
  }
  Linear(y.data(), Pick(hm.o, w.Wo), X, ntot, C, C, /*accumulate=*/true);

  std::vector<float*> prev;
  for (const auto& s : seqs) prev.push_back(s.state->attn[j].ffn_prev.data());
  ChannelMixForward(w.ln2_w.data(), w.ln2_b.data(), w.ffn_x_k.data(), Pick(hm.key, w.ffn_key),
                    Pick(hm.value, w.ffn_value), C, m.shape.ffn_dim, seqs, prev, X, ntot);
}

}  // namespace rwkvx::cpu
