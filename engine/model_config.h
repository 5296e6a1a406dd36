// Model shape (inferred from a checkpoint's tensor shapes) and the sparse-attention
// run-time parameters. Plain values; no threading concerns.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace rwkvx {

struct ModelShape {
  int vocab = 0;         // V
  int n_embd = 0;        // C
  int head_size = 64;    // N
  int n_head = 0;        // H = C / N
  int n_rwkv_layer = 0;  // R: RWKV-7 blocks in the checkpoint
  int n_attn_layer = 0;  // M: sparse-attention blocks
  int ffn_dim = 0;       // 4C for released models, read from ffn.key.weight
  int rank_w = 0, rank_a = 0, rank_v = 0, rank_g = 0;  // LoRA ranks
};

enum class AttnDecodeMode { kSparse, kFull };
enum class AttnPrefillMode { kChunk, kFull };
// Which generation of the official package's rules to reproduce (docs/MODEL.md).
enum class ReferenceRules { k01, k02 };

struct SparseAttnConfig {
  int chunk_size = 2048;            // B
  int topk = 3;                     // K
  int full_attn_threshold = -1;     // -1: chunk_size * topk
  AttnPrefillMode prefill_mode = AttnPrefillMode::kChunk;
  AttnDecodeMode decode_mode = AttnDecodeMode::kSparse;
  int max_kv_cache_size = 20000;    // 0 = never compress
  int kv_cache_window_size = 2000;
  int min_kv_cache_size = 16000;
  ReferenceRules rules = ReferenceRules::k01;
  // The context (tokens) the model declares it handles (sidecar "ctx_len"); 0 = none
  // declared. The server's default prompt cap follows it (docs/SERVER.md).
  int context_length = 0;

  int Threshold() const { return full_attn_threshold >= 0 ? full_attn_threshold : chunk_size * topk; }
  // Checks ranges (chunk >= 1, topk >= 1, window < min when compressing, ...).
  absl::Status Validate() const;
};

// Parses a JSON object of overrides (keys as in docs/MODEL.md: chunk_size, topk,
// full_attn_threshold, prefill_attn_mode, decode_attn_mode, max_kv_cache_size,
// kv_cache_window_size, min_kv_cache_size, reference, ctx_len) into `cfg`.
absl::Status ApplySparseAttnJson(const std::string& json_text, SparseAttnConfig* cfg);

// The execution order of blocks: entries >= 0 are RWKV block ids, entries < 0 are
// sparse block -(j+1). Reproduces the reference quirks (docs/MODEL.md).
std::vector<int> BlockOrder(const ModelShape& shape);

}  // namespace rwkvx
