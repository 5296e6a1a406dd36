// ModelToTensors: a Model back to an official-layout state dict (float32).
#include <cstring>
#include "absl/strings/str_cat.h"
#include "engine/model.h"

namespace rwkvx {
namespace {

void Put(TensorMap& m, const std::string& key, const std::vector<float>& v, std::vector<int64_t> shape) {
  RawTensor t;
  t.dtype = DType::kF32;
  t.shape = std::move(shape);
  t.bytes.resize(v.size() * sizeof(float));
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  m[key] = std::move(t);
}

}  // namespace

TensorMap ModelToTensors(const Model& model) {
  TensorMap m;
  const auto& s = model.shape;
  const int64_t C = s.n_embd, F = s.ffn_dim, V = s.vocab;
  const std::vector<int64_t> vec{1, 1, C};
  Put(m, "rwkv.emb.weight", model.emb, {V, C});
  Put(m, "rwkv.blocks.0.ln0.weight", std::vector<float>(C, 1.0f), {C});
  Put(m, "rwkv.blocks.0.ln0.bias", std::vector<float>(C, 0.0f), {C});
  Put(m, "rwkv.ln_out.weight", model.ln_out_w, {C});
  Put(m, "rwkv.ln_out.bias", model.ln_out_b, {C});
  Put(m, "rwkv.head.weight", model.head, {V, C});
  for (int i = 0; i < s.n_rwkv_layer; ++i) {
    const auto& w = model.rwkv[i];
    const std::string b = absl::StrCat("rwkv.blocks.", i, ".");
    Put(m, b + "ln1.weight", w.ln1_w, {C}); Put(m, b + "ln1.bias", w.ln1_b, {C});
    Put(m, b + "ln2.weight", w.ln2_w, {C}); Put(m, b + "ln2.bias", w.ln2_b, {C});
    Put(m, b + "att.x_r", w.x_r, vec); Put(m, b + "att.x_w", w.x_w, vec);
    Put(m, b + "att.x_k", w.x_k, vec); Put(m, b + "att.x_v", w.x_v, vec);
    Put(m, b + "att.x_a", w.x_a, vec); Put(m, b + "att.x_g", w.x_g, vec);
    Put(m, b + "att.w0", w.w0, vec);
    Put(m, b + "att.w1", w.w1, {C, s.rank_w}); Put(m, b + "att.w2", w.w2, {s.rank_w, C});
    Put(m, b + "att.a0", w.a0, vec);
    Put(m, b + "att.a1", w.a1, {C, s.rank_a}); Put(m, b + "att.a2", w.a2, {s.rank_a, C});
    if (i > 0) {
      Put(m, b + "att.v0", w.v0, vec);
      Put(m, b + "att.v1", w.v1, {C, s.rank_v}); Put(m, b + "att.v2", w.v2, {s.rank_v, C});
    }
    Put(m, b + "att.g1", w.g1, {C, s.rank_g}); Put(m, b + "att.g2", w.g2, {s.rank_g, C});
    Put(m, b + "att.k_k", w.k_k, vec); Put(m, b + "att.k_a", w.k_a, vec);
    Put(m, b + "att.r_k", w.r_k, {s.n_head, s.head_size});
    Put(m, b + "att.receptance.weight", w.Wr, {C, C}); Put(m, b + "att.key.weight", w.Wk, {C, C});
    Put(m, b + "att.value.weight", w.Wv, {C, C}); Put(m, b + "att.output.weight", w.Wo, {C, C});
    Put(m, b + "att.ln_x.weight", w.ln_x_w, {C}); Put(m, b + "att.ln_x.bias", w.ln_x_b, {C});
    Put(m, b + "ffn.x_k", w.ffn_x_k, vec);
    Put(m, b + "ffn.key.weight", w.ffn_key, {F, C}); Put(m, b + "ffn.value.weight", w.ffn_value, {C, F});
  }
  for (int j = 0; j < s.n_attn_layer; ++j) {
    const auto& w = model.attn_blocks[j];
    const std::string b = absl::StrCat("moba.", j, ".");
    Put(m, b + "ln1.weight", w.ln1_w, {C}); Put(m, b + "ln1.bias", w.ln1_b, {C});
    Put(m, b + "ln2.weight", w.ln2_w, {C}); Put(m, b + "ln2.bias", w.ln2_b, {C});
    Put(m, b + "att.receptance.weight", w.Wq, {C, C}); Put(m, b + "att.key.weight", w.Wk, {C, C});
    Put(m, b + "att.value.weight", w.Wv, {C, C}); Put(m, b + "att.output.weight", w.Wo, {C, C});
    Put(m, b + "ffn.x_k", w.ffn_x_k, vec);
    Put(m, b + "ffn.key.weight", w.ffn_key, {F, C}); Put(m, b + "ffn.value.weight", w.ffn_value, {C, F});
  }
  return m;
}

}  // namespace rwkvx
