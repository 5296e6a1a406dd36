// MakeRandomModel: deterministic random weights (same seed => same bits everywhere: a
// splitmix64 stream and plain float arithmetic, no std:: distributions).
#include <cmath>

#include "engine/cpu/ops.h"
#include "engine/model.h"

namespace rwkvx {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Sym() { return static_cast<float>((Next() >> 40) * (1.0 / (1ULL << 23)) - 1.0); }
  float Unit() { return static_cast<float>((Next() >> 40) * (1.0 / (1ULL << 24))); }

 private:
  uint64_t s_;
};

std::vector<float> Fill(Rng& r, size_t n, float scale, float offset = 0.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = offset + scale * r.Sym();
  return v;
}
std::vector<float> FillUnit(Rng& r, size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = r.Unit();
  return v;
}

}  // namespace

std::shared_ptr<Model> MakeRandomModel(const ModelShape& shape_in, uint64_t seed, std::string name) {
  auto m = std::make_shared<Model>();
  ModelShape s = shape_in;
  s.n_head = s.n_embd / s.head_size;
  if (s.ffn_dim == 0) s.ffn_dim = 4 * s.n_embd;
  m->shape = s;
  m->name = std::move(name);
  m->source = "embedded (random weights)";
  Rng r(seed);
  const size_t C = s.n_embd, F = s.ffn_dim, V = s.vocab;
  // Uniform(-a, a) has std a/sqrt(3); matrices get std ~ 1/sqrt(fan_in).
  const float lin = std::sqrt(3.0f / C), lin_f = std::sqrt(3.0f / F);
  m->emb = Fill(r, V * C, 1.0f);
  std::vector<float> ln0w = Fill(r, C, 0.1f, 1.0f), ln0b = Fill(r, C, 0.1f);
  for (size_t t = 0; t < V; ++t) cpu::LayerNorm(&m->emb[t * C], ln0w.data(), ln0b.data(), &m->emb[t * C], C);
  m->ln_out_w = Fill(r, C, 0.1f, 1.0f);
  m->ln_out_b = Fill(r, C, 0.1f);
  m->head = Fill(r, V * C, lin);
  m->rwkv.resize(s.n_rwkv_layer);
  for (int i = 0; i < s.n_rwkv_layer; ++i) {
    auto& w = m->rwkv[i];
    w.ln1_w = Fill(r, C, 0.1f, 1.0f); w.ln1_b = Fill(r, C, 0.1f);
    w.ln2_w = Fill(r, C, 0.1f, 1.0f); w.ln2_b = Fill(r, C, 0.1f);
    w.x_r = FillUnit(r, C); w.x_w = FillUnit(r, C); w.x_k = FillUnit(r, C);
    w.x_v = FillUnit(r, C); w.x_a = FillUnit(r, C); w.x_g = FillUnit(r, C);
    w.w0 = Fill(r, C, 1.0f, -1.0f);
    w.w1 = Fill(r, C * s.rank_w, lin); w.w2 = Fill(r, s.rank_w * C, 0.1f);
    w.a0 = Fill(r, C, 0.5f);
    w.a1 = Fill(r, C * s.rank_a, lin); w.a2 = Fill(r, s.rank_a * C, 0.1f);
    if (i > 0) {
      w.v0 = Fill(r, C, 0.5f);
      w.v1 = Fill(r, C * s.rank_v, lin); w.v2 = Fill(r, s.rank_v * C, 0.1f);
    }
    w.g1 = Fill(r, C * s.rank_g, lin); w.g2 = Fill(r, s.rank_g * C, 0.1f);
    w.k_k = Fill(r, C, 0.2f, 0.85f); w.k_a = Fill(r, C, 0.2f, 1.0f);
    w.r_k = Fill(r, C, 0.1f);
    w.Wr = Fill(r, C * C, lin); w.Wk = Fill(r, C * C, lin);
    w.Wv = Fill(r, C * C, lin); w.Wo = Fill(r, C * C, lin);
    w.ln_x_w = Fill(r, C, 0.1f, 1.0f); w.ln_x_b = Fill(r, C, 0.1f);
    w.ffn_x_k = FillUnit(r, C);
    w.ffn_key = Fill(r, F * C, lin); w.ffn_value = Fill(r, C * F, lin_f);
  }
  m->attn_blocks.resize(s.n_attn_layer);
  for (int j = 0; j < s.n_attn_layer; ++j) {
    auto& w = m->attn_blocks[j];
    w.ln1_w = Fill(r, C, 0.1f, 1.0f); w.ln1_b = Fill(r, C, 0.1f);
    w.ln2_w = Fill(r, C, 0.1f, 1.0f); w.ln2_b = Fill(r, C, 0.1f);
    w.Wq = Fill(r, C * C, lin); w.Wk = Fill(r, C * C, lin);
    w.Wv = Fill(r, C * C, lin); w.Wo = Fill(r, C * C, lin);
    w.ffn_x_k = FillUnit(r, C);
    w.ffn_key = Fill(r, F * C, lin); w.ffn_value = Fill(r, C * F, lin_f);
  }
  m->order = BlockOrder(s);
  return m;
}

}  // namespace rwkvx
