// Model weights in float32, laid out for the engines. Immutable once loaded; shared
// read-only by every backend and thread (std::shared_ptr<const Model>).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/tensor.h"

namespace rwkvx {

// Matrices are stored as torch Linear weights: [out, in] row-major.
// Vectors are [C] unless noted.
struct RwkvBlockWeights {
  std::vector<float> ln1_w, ln1_b, ln2_w, ln2_b;
  std::vector<float> x_r, x_w, x_k, x_v, x_a, x_g;  // [C]
  std::vector<float> w0, a0, v0;                    // [C]   (v0..v2 empty on block 0)
  std::vector<float> w1, a1, v1, g1;                // [C, rank] (torch layout, used as x @ W1)
  std::vector<float> w2, a2, v2, g2;                // [rank, C]
  std::vector<float> k_k, k_a;                      // [C]
  std::vector<float> r_k;                           // [H * N]
  std::vector<float> Wr, Wk, Wv, Wo;                // [C, C]  (out, in)
  std::vector<float> ln_x_w, ln_x_b;                // [C]
  std::vector<float> ffn_x_k;                       // [C]
  std::vector<float> ffn_key;                       // [F, C]
  std::vector<float> ffn_value;                     // [C, F]
};

struct AttnBlockWeights {
  std::vector<float> ln1_w, ln1_b, ln2_w, ln2_b;
  std::vector<float> Wq, Wk, Wv, Wo;  // [C, C] (out, in); q comes from `receptance`
  std::vector<float> ffn_x_k;         // [C]
  std::vector<float> ffn_key;         // [F, C]
  std::vector<float> ffn_value;       // [C, F]
};

struct Model {
  std::string name;     // shown in logs and /v1/models
  std::string source;   // file path or "embedded"
  ModelShape shape;
  SparseAttnConfig attn;  // run-time parameters (defaults, JSON sidecar, flags)
  std::vector<float> emb;       // [V, C], already layer-normed with blocks.0.ln0
  std::vector<float> ln_out_w, ln_out_b;
  std::vector<float> head;      // [V, C]
  std::vector<RwkvBlockWeights> rwkv;
  std::vector<AttnBlockWeights> attn_blocks;
  std::vector<int> order;       // BlockOrder(shape)
  std::vector<std::string> warnings;  // e.g. R mod M != 0
};

// Builds a model from a state dict. Accepts RWKV-X (`rwkv.` + `moba.{j}.` keys) and plain
// RWKV-7 (no prefix, no sparse blocks). Infers the shape; any missing or mis-shaped
// tensor is an InvalidArgument naming the key.
absl::StatusOr<std::shared_ptr<Model>> BuildModel(const TensorMap& tensors, std::string name);

// Reads a checkpoint (.pth or .safetensors), then the optional sidecar JSON config
// (`<path>.json`, or `config.json` beside it) into model->attn.
absl::StatusOr<std::shared_ptr<Model>> LoadModelFile(const std::string& path);

// The model as an official-layout state dict (float32, `rwkv.` + `moba.{j}.` keys). The
// embedding is already normalised, so blocks.0.ln0 is written as the identity (a reload
// re-normalises it: equal up to LayerNorm's eps, not bit-exact).
TensorMap ModelToTensors(const Model& model);

// A deterministic random-weight RWKV-X of the given shape (the embedded default model
// and benchmarks). Same seed => same weights on every machine.
std::shared_ptr<Model> MakeRandomModel(const ModelShape& shape, uint64_t seed, std::string name);

}  // namespace rwkvx
