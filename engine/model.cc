#include "engine/model.h"

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/cpu/ops.h"

namespace rwkvx {
namespace {

std::string ShapeStr(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ","), "]");
}

// Looks up tensors under a key prefix and checks their element counts / shapes.
class TensorSource {
 public:
  TensorSource(const TensorMap& m, std::string prefix) : m_(m), prefix_(std::move(prefix)) {}

  const RawTensor* Find(const std::string& key) const {
    auto it = m_.find(prefix_ + key);
    return it == m_.end() ? nullptr : &it->second;
  }
  // A tensor whose squeezed shape must equal `want` (dims of size 1 ignored).
  absl::Status Get(const std::string& key, std::vector<int64_t> want, std::vector<float>* out) const {
    const RawTensor* t = Find(key);
    if (!t) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", prefix_, key, "'"));
    std::vector<int64_t> got;
    for (auto d : t->shape) if (d != 1) got.push_back(d);
    std::vector<int64_t> w;
    for (auto d : want) if (d != 1) w.push_back(d);
    if (got != w)
      return absl::InvalidArgumentError(absl::StrCat("tensor '", prefix_, key, "' has shape ",
                                                     ShapeStr(t->shape), ", expected ", ShapeStr(want)));
    *out = t->ToFloat();
    for (float v : *out)
      if (!std::isfinite(v))
        return absl::InvalidArgumentError(absl::StrCat("tensor '", prefix_, key, "' holds a non-finite value"));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& key) const {
    const RawTensor* t = Find(key);
    if (!t) return absl::InvalidArgumentError(absl::StrCat("missing tensor '", prefix_, key, "'"));
    return t->shape;
  }

 private:
  const TensorMap& m_;
  std::string prefix_;
};

absl::StatusOr<int> Dim(const TensorSource& src, const std::string& key, int axis, int rank) {
  auto s = src.Shape(key);
  if (!s.ok()) return s.status();
  if ((int)s->size() != rank)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "' has rank ", s->size(), ", expected ", rank));
  int64_t d = (*s)[axis];
  if (d <= 0 || d > (1 << 24)) return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "' has a bad size"));
  return static_cast<int>(d);
}

// Block ids present under `prefix` as `<prefix><id>.`; must be 0..n-1.
absl::StatusOr<int> CountIndexed(const TensorMap& m, const std::string& prefix) {
  std::set<int> ids;
  for (const auto& [k, v] : m) {
    if (!absl::StartsWith(k, prefix)) continue;
    std::string rest = k.substr(prefix.size());
    auto dot = rest.find('.');
    int id;
    if (dot == std::string::npos || !absl::SimpleAtoi(rest.substr(0, dot), &id) || id < 0)
      return absl::InvalidArgumentError(absl::StrCat("unexpected key '", k, "'"));
    ids.insert(id);
  }
  if (!ids.empty() && (*ids.begin() != 0 || *ids.rbegin() != (int)ids.size() - 1))
    return absl::InvalidArgumentError(absl::StrCat("block ids under '", prefix, "' are not 0..n-1"));
  return static_cast<int>(ids.size());
}

}  // namespace

absl::StatusOr<std::shared_ptr<Model>> BuildModel(const TensorMap& tensors, std::string name) {
  auto model = std::make_shared<Model>();
  model->name = std::move(name);
  bool is_x = false;
  for (const auto& [k, v] : tensors) is_x |= absl::StartsWith(k, "rwkv.");
  const std::string rp = is_x ? "rwkv." : "";
  TensorSource top(tensors, rp);
  ModelShape& s = model->shape;

  auto V = Dim(top, "emb.weight", 0, 2); if (!V.ok()) return V.status();
  auto C = Dim(top, "emb.weight", 1, 2); if (!C.ok()) return C.status();
  auto H = Dim(top, "blocks.0.att.r_k", 0, 2); if (!H.ok()) return H.status();
  auto N = Dim(top, "blocks.0.att.r_k", 1, 2); if (!N.ok()) return N.status();
  s.vocab = *V; s.n_embd = *C; s.n_head = *H; s.head_size = *N;
  if (s.n_head * s.head_size != s.n_embd)
    return absl::InvalidArgumentError(absl::StrCat("r_k shape [", s.n_head, ",", s.head_size,
                                                   "] does not match n_embd ", s.n_embd));
  if (s.head_size != 64)
    return absl::InvalidArgumentError(absl::StrCat("head size ", s.head_size,
                                                   " is not supported (RWKV-7 x070 uses 64)"));
  auto R = CountIndexed(tensors, rp + "blocks."); if (!R.ok()) return R.status();
  s.n_rwkv_layer = *R;
  if (s.n_rwkv_layer < 1) return absl::InvalidArgumentError("checkpoint has no RWKV blocks");
  if (is_x) {
    auto M = CountIndexed(tensors, "moba."); if (!M.ok()) return M.status();
    s.n_attn_layer = *M;
  }
  auto F = Dim(top, "blocks.0.ffn.key.weight", 0, 2); if (!F.ok()) return F.status();
  s.ffn_dim = *F;
  auto Dw = Dim(top, "blocks.0.att.w1", 1, 2); if (!Dw.ok()) return Dw.status();
  auto Da = Dim(top, "blocks.0.att.a1", 1, 2); if (!Da.ok()) return Da.status();
  auto Dg = Dim(top, "blocks.0.att.g1", 1, 2); if (!Dg.ok()) return Dg.status();
  s.rank_w = *Dw; s.rank_a = *Da; s.rank_g = *Dg;
  if (s.n_rwkv_layer > 1) {
    auto Dv = Dim(top, "blocks.1.att.v1", 1, 2); if (!Dv.ok()) return Dv.status();
    s.rank_v = *Dv;
  }
  const int64_t c = s.n_embd, f = s.ffn_dim, v = s.vocab;

  std::vector<float> ln0_w, ln0_b;
#define RX_GET(src, key, shape, dst) \
  do { if (auto st_ = (src).Get(key, shape, dst); !st_.ok()) return st_; } while (0)
  RX_GET(top, "emb.weight", (std::vector<int64_t>{v, c}), &model->emb);
  RX_GET(top, "blocks.0.ln0.weight", {c}, &ln0_w);
  RX_GET(top, "blocks.0.ln0.bias", {c}, &ln0_b);
  RX_GET(top, "ln_out.weight", {c}, &model->ln_out_w);
  RX_GET(top, "ln_out.bias", {c}, &model->ln_out_b);
  RX_GET(top, "head.weight", (std::vector<int64_t>{v, c}), &model->head);

  model->rwkv.resize(s.n_rwkv_layer);
  for (int i = 0; i < s.n_rwkv_layer; ++i) {
    TensorSource b(tensors, absl::StrCat(rp, "blocks.", i, "."));
    RwkvBlockWeights& w = model->rwkv[i];
    RX_GET(b, "ln1.weight", {c}, &w.ln1_w); RX_GET(b, "ln1.bias", {c}, &w.ln1_b);
    RX_GET(b, "ln2.weight", {c}, &w.ln2_w); RX_GET(b, "ln2.bias", {c}, &w.ln2_b);
    RX_GET(b, "att.x_r", {c}, &w.x_r); RX_GET(b, "att.x_w", {c}, &w.x_w);
    RX_GET(b, "att.x_k", {c}, &w.x_k); RX_GET(b, "att.x_v", {c}, &w.x_v);
    RX_GET(b, "att.x_a", {c}, &w.x_a); RX_GET(b, "att.x_g", {c}, &w.x_g);
    RX_GET(b, "att.w0", {c}, &w.w0);
    RX_GET(b, "att.w1", (std::vector<int64_t>{c, s.rank_w}), &w.w1);
    RX_GET(b, "att.w2", (std::vector<int64_t>{s.rank_w, c}), &w.w2);
    RX_GET(b, "att.a0", {c}, &w.a0);
    RX_GET(b, "att.a1", (std::vector<int64_t>{c, s.rank_a}), &w.a1);
    RX_GET(b, "att.a2", (std::vector<int64_t>{s.rank_a, c}), &w.a2);
    if (i > 0) {
      RX_GET(b, "att.v0", {c}, &w.v0);
      RX_GET(b, "att.v1", (std::vector<int64_t>{c, s.rank_v}), &w.v1);
      RX_GET(b, "att.v2", (std::vector<int64_t>{s.rank_v, c}), &w.v2);
    }
    RX_GET(b, "att.g1", (std::vector<int64_t>{c, s.rank_g}), &w.g1);
    RX_GET(b, "att.g2", (std::vector<int64_t>{s.rank_g, c}), &w.g2);
    RX_GET(b, "att.k_k", {c}, &w.k_k); RX_GET(b, "att.k_a", {c}, &w.k_a);
    RX_GET(b, "att.r_k", (std::vector<int64_t>{s.n_head, s.head_size}), &w.r_k);
    RX_GET(b, "att.receptance.weight", (std::vector<int64_t>{c, c}), &w.Wr);
    RX_GET(b, "att.key.weight", (std::vector<int64_t>{c, c}), &w.Wk);
    RX_GET(b, "att.value.weight", (std::vector<int64_t>{c, c}), &w.Wv);
    RX_GET(b, "att.output.weight", (std::vector<int64_t>{c, c}), &w.Wo);
    RX_GET(b, "att.ln_x.weight", {c}, &w.ln_x_w); RX_GET(b, "att.ln_x.bias", {c}, &w.ln_x_b);
    RX_GET(b, "ffn.x_k", {c}, &w.ffn_x_k);
    RX_GET(b, "ffn.key.weight", (std::vector<int64_t>{f, c}), &w.ffn_key);
    RX_GET(b, "ffn.value.weight", (std::vector<int64_t>{c, f}), &w.ffn_value);
  }
  model->attn_blocks.resize(s.n_attn_layer);
  for (int j = 0; j < s.n_attn_layer; ++j) {
    TensorSource b(tensors, absl::StrCat("moba.", j, "."));
    AttnBlockWeights& w = model->attn_blocks[j];
    RX_GET(b, "ln1.weight", {c}, &w.ln1_w); RX_GET(b, "ln1.bias", {c}, &w.ln1_b);
    RX_GET(b, "ln2.weight", {c}, &w.ln2_w); RX_GET(b, "ln2.bias", {c}, &w.ln2_b);
    RX_GET(b, "att.receptance.weight", (std::vector<int64_t>{c, c}), &w.Wq);
    RX_GET(b, "att.key.weight", (std::vector<int64_t>{c, c}), &w.Wk);
    RX_GET(b, "att.value.weight", (std::vector<int64_t>{c, c}), &w.Wv);
    RX_GET(b, "att.output.weight", (std::vector<int64_t>{c, c}), &w.Wo);
    RX_GET(b, "ffn.x_k", {c}, &w.ffn_x_k);
    RX_GET(b, "ffn.key.weight", (std::vector<int64_t>{f, c}), &w.ffn_key);
    RX_GET(b, "ffn.value.weight", (std::vector<int64_t>{c, f}), &w.ffn_value);
  }
#undef RX_GET
  // The embedding table is layer-normed once with blocks.0.ln0 (as the reference does).
  for (int64_t t = 0; t < v; ++t) {
    float* row = model->emb.data() + t * c;
    cpu::LayerNorm(row, ln0_w.data(), ln0_b.data(), row, c);
  }
  model->order = BlockOrder(s);
  if (s.n_attn_layer > 1 && s.n_rwkv_layer % s.n_attn_layer != 0) {
    const int run = (s.n_rwkv_layer / s.n_attn_layer) * s.n_attn_layer;
    model->warnings.push_back(absl::StrCat(
        "R=", s.n_rwkv_layer, " RWKV blocks is not a multiple of M=", s.n_attn_layer,
        " sparse blocks: RWKV blocks ", run, "..", s.n_rwkv_layer - 1,
        " are not run (reproducing the reference's block order)"));
  }
  return model;
}

absl::StatusOr<std::shared_ptr<Model>> LoadModelFile(const std::string& path) {
  auto tensors = ReadCheckpointFile(path);
  if (!tensors.ok()) return tensors.status();
  std::string name = path;
  if (auto p = name.find_last_of('/'); p != std::string::npos) name = name.substr(p + 1);
  if (auto p = name.find_last_of('.'); p != std::string::npos && p > 0) name = name.substr(0, p);
  auto model = BuildModel(*tensors, name);
  if (!model.ok())
    return absl::Status(model.status().code(), absl::StrCat(path, ": ", model.status().message()));
  (*model)->source = path;
  // Optional sidecar: <checkpoint>.json, else rwkvx.json in the same folder.
  std::string dir = ".";
  if (auto p = path.find_last_of('/'); p != std::string::npos) dir = path.substr(0, p);
  for (const std::string& side : {path + ".json", dir + "/rwkvx.json"}) {
    std::ifstream in(side);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    if (auto st = ApplySparseAttnJson(ss.str(), &(*model)->attn); !st.ok())
      return absl::InvalidArgumentError(absl::StrCat(side, ": ", st.message()));
    break;
  }
  return model;
}

}  // namespace rwkvx
