// RWKV-7 ("x070") block on the CPU, float32, following the official package's
// RWKV_x070_TMix_seq / _one and CMix (docs/MODEL.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/forward.h"
#include "engine/cpu/ops.h"
#include "engine/tensor.h"

namespace rwkvx::cpu {

void TokenShiftMix(const float* u, const float* prev, const float* mix, float* out, int64_t T, int64_t C) {
  for (int64_t t = 0; t < T; ++t) {
    const float* p = t == 0 ? prev : u + (t - 1) * C;
    const float* x = u + t * C;
    float* o = out + t * C;
    for (int64_t c = 0; c < C; ++c) o[c] = x[c] + (p[c] - x[c]) * mix[c];
  }
}

void ChannelMixForward(const float* ln_w, const float* ln_b, const float* x_k, WeightRef key,
                       WeightRef value, int64_t C, int64_t F, const std::vector<SeqSlice>& seqs,
                       const std::vector<float*>& prev, float* X, int64_t ntot) {
  std::vector<float> u(ntot * C), xk(ntot * C), h(ntot * F);
  for (int64_t r = 0; r < ntot; ++r) LayerNorm(X + r * C, ln_w, ln_b, u.data() + r * C, C);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& q = seqs[s];
    TokenShiftMix(u.data() + q.row0 * C, prev[s], x_k, xk.data() + q.row0 * C, q.T, C);
    std::memcpy(prev[s], u.data() + (q.row0 + q.T - 1) * C, C * sizeof(float));
  }
  Linear(xk.data(), key, h.data(), ntot, F, C);
  for (auto& v : h) {
    v = v > 0 ? v : 0;
    v = v * v;
  }
  Linear(h.data(), value, X, ntot, C, F, /*accumulate=*/true);
}

namespace {
std::vector<float> Transposed(const std::vector<float>& w, int64_t rows, int64_t cols) {
  std::vector<float> t(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  return t;
}
}  // namespace

RwkvLoraT TransposeLora(const RwkvBlockWeights& w, const ModelShape& s) {
  const int64_t C = s.n_embd;
  RwkvLoraT t;
  t.w1 = Transposed(w.w1, C, s.rank_w); t.w2 = Transposed(w.w2, s.rank_w, C);
  t.a1 = Transposed(w.a1, C, s.rank_a); t.a2 = Transposed(w.a2, s.rank_a, C);
  if (!w.v1.empty()) { t.v1 = Transposed(w.v1, C, s.rank_v); t.v2 = Transposed(w.v2, s.rank_v, C); }
  t.g1 = Transposed(w.g1, C, s.rank_g); t.g2 = Transposed(w.g2, s.rank_g, C);
  return t;
}

std::vector<uint16_t> ToHalf(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = FloatToHalf(v[i]);
  return h;
}
HalfMats ToHalf(const RwkvBlockWeights& w) {
  return {ToHalf(w.Wr), ToHalf(w.Wk), ToHalf(w.Wv), ToHalf(w.Wo), ToHalf(w.ffn_key), ToHalf(w.ffn_value)};
}
HalfMats ToHalf(const AttnBlockWeights& w) {
  return {ToHalf(w.Wq), ToHalf(w.Wk), ToHalf(w.Wv), ToHalf(w.Wo), ToHalf(w.ffn_key), ToHalf(w.ffn_value)};
}

void RwkvBlockForward(const Model& m, const RwkvLoraT& lt, const HalfMats& hm, int layer,
                      const std::vector<SeqSlice>& seqs, float* X, float* v_first, int64_t ntot) {
  const RwkvBlockWeights& w = m.rwkv[layer];
  const int64_t C = m.shape.n_embd, H = m.shape.n_head, N = m.shape.head_size;
  const size_t NC = ntot * C;
  std::vector<float> u(NC);
  for (int64_t r = 0; r < ntot; ++r) LayerNorm(X + r * C, w.ln1_w.data(), w.ln1_b.data(), u.data() + r * C, C);

  // Token-shift mixes.
  std::vector<float> xr(NC), xw(NC), xk(NC), xv(NC), xa(NC), xg(NC);
  for (const auto& q : seqs) {
    std::vector<float>& prev = q.state->rwkv[layer].att_prev;
    const float* uu = u.data() + q.row0 * C;
    const size_t off = q.row0 * C;
    TokenShiftMix(uu, prev.data(), w.x_r.data(), xr.data() + off, q.T, C);
    TokenShiftMix(uu, prev.data(), w.x_w.data(), xw.data() + off, q.T, C);
    TokenShiftMix(uu, prev.data(), w.x_k.data(), xk.data() + off, q.T, C);
    TokenShiftMix(uu, prev.data(), w.x_v.data(), xv.data() + off, q.T, C);
    TokenShiftMix(uu, prev.data(), w.x_a.data(), xa.data() + off, q.T, C);
    TokenShiftMix(uu, prev.data(), w.x_g.data(), xg.data() + off, q.T, C);
    std::memcpy(prev.data(), uu + (q.T - 1) * C, C * sizeof(float));
  }

  // Projections over all rows of the step.
  std::vector<float> r(NC), k(NC), v(NC), dw(NC), a(NC), g(NC);
  Linear(xr.data(), Pick(hm.r, w.Wr), r.data(), ntot, C, C);
  Linear(xk.data(), Pick(hm.k, w.Wk), k.data(), ntot, C, C);
  Linear(xv.data(), Pick(hm.v, w.Wv), v.data(), ntot, C, C);
  const int64_t Dw = m.shape.rank_w, Da = m.shape.rank_a, Dv = m.shape.rank_v, Dg = m.shape.rank_g;
  {
    std::vector<float> t(ntot * Dw);
    Linear(xw.data(), lt.w1.data(), t.data(), ntot, Dw, C);
    for (auto& x : t) x = std::tanh(x);
    Linear(t.data(), lt.w2.data(), dw.data(), ntot, C, Dw);
  }
  {
    std::vector<float> t(ntot * Da);
    Linear(xa.data(), lt.a1.data(), t.data(), ntot, Da, C);
    Linear(t.data(), lt.a2.data(), a.data(), ntot, C, Da);
    for (int64_t i = 0; i < (int64_t)NC; ++i) a[i] = Sigmoid(w.a0[i % C] + a[i]);
  }
  {
    std::vector<float> t(ntot * Dg);
    Linear(xg.data(), lt.g1.data(), t.data(), ntot, Dg, C);
    for (auto& x : t) x = Sigmoid(x);
    Linear(t.data(), lt.g2.data(), g.data(), ntot, C, Dg);
  }
  if (layer == 0) {
    std::memcpy(v_first, v.data(), NC * sizeof(float));
  } else {
    std::vector<float> t(ntot * Dv), vv(NC);
    Linear(xv.data(), lt.v1.data(), t.data(), ntot, Dv, C);
    Linear(t.data(), lt.v2.data(), vv.data(), ntot, C, Dv);
    for (size_t i = 0; i < NC; ++i) v[i] = v[i] + (v_first[i] - v[i]) * Sigmoid(w.v0[i % C] + vv[i]);
  }

  // kk = normalize(k * k_k) per head; k <- k * (1 + (a - 1) * k_a); decay w.
  std::vector<float> kk(NC);
  for (int64_t row = 0; row < ntot; ++row) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t o = row * C + h * N;
      double ss = 0;
      for (int64_t j = 0; j < N; ++j) {
        kk[o + j] = k[o + j] * w.k_k[h * N + j];
        ss += (double)kk[o + j] * kk[o + j];
      }
      const float inv = 1.0f / std::max((float)std::sqrt(ss), 1e-12f);
      for (int64_t j = 0; j < N; ++j) kk[o + j] *= inv;
    }
  }
  for (size_t i = 0; i < NC; ++i) {
    const int64_t c = i % C;
    k[i] = k[i] * (1 + (a[i] - 1) * w.k_a[c]);
    dw[i] = std::exp(-0.606531f * Sigmoid(w.w0[c] + dw[i]));  // 0.606531 = exp(-0.5), as the reference
  }

  // The wkv7 recurrence, per session and head, token by token.
  std::vector<float> y(NC);
  const int64_t nseq = seqs.size();
  ParallelFor(nseq * H, [&](int64_t job) {
    const SeqSlice& q = seqs[job / H];
    const int64_t h = job % H;
    float* S = q.state->rwkv[layer].wkv.data() + h * N * N;  // [N, N]
    for (int64_t t = 0; t < q.T; ++t) {
      const int64_t o = (q.row0 + t) * C + h * N;
      const float *rr = &r[o], *ww = &dw[o], *kt = &k[o], *vt = &v[o], *kkt = &kk[o], *at = &a[o];
      float b[64];
      for (int64_t j = 0; j < N; ++j) b[j] = kkt[j] * at[j];
      for (int64_t i = 0; i < N; ++i) {
        float* Si = S + i * N;
        float sa = 0;
        for (int64_t j = 0; j < N; ++j) sa -= Si[j] * kkt[j];
        float yi = 0;
        const float vi = vt[i];
        for (int64_t j = 0; j < N; ++j) {
          Si[j] = Si[j] * ww[j] + sa * b[j] + vi * kt[j];
          yi += Si[j] * rr[j];
        }
        y[o + i] = yi;
      }
    }
  });

  // GroupNorm (one group per head, eps 64e-5), bonus term, gate.
  for (int64_t row = 0; row < ntot; ++row) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t o = row * C + h * N;
      double mean = 0, var = 0;
      for (int64_t j = 0; j < N; ++j) mean += y[o + j];
      mean /= N;
      for (int64_t j = 0; j < N; ++j) var += (y[o + j] - mean) * (y[o + j] - mean);
      var /= N;
      const float inv = 1.0f / std::sqrt((float)var + 64e-5f);
      float bonus = 0;
      for (int64_t j = 0; j < N; ++j) bonus += r[o + j] * k[o + j] * w.r_k[h * N + j];
      for (int64_t j = 0; j < N; ++j) {
        const int64_t c = h * N + j;
        float yy = (y[o + j] - (float)mean) * inv * w.ln_x_w[c] + w.ln_x_b[c];
        yy += bonus * v[o + j];
        y[o + j] = yy * g[o + j];
      }
    }
  }
  Linear(y.data(), Pick(hm.o, w.Wo), X, ntot, C, C, /*accumulate=*/true);

  std::vector<float*> prev;
  for (const auto& q : seqs) prev.push_back(q.state->rwkv[layer].ffn_prev.data());
  ChannelMixForward(w.ln2_w.data(), w.ln2_b.data(), w.ffn_x_k.data(), Pick(hm.key, w.ffn_key),
                    Pick(hm.value, w.ffn_value), C, m.shape.ffn_dim, seqs, prev, X, ntot);
}

}  // namespace rwkvx::cpu
