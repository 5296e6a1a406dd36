#include "engine/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace rwkvx {

absl::Status SparseAttnConfig::Validate() const {
  if (chunk_size < 1) return absl::InvalidArgumentError("chunk size must be >= 1");
  if (topk < 1) return absl::InvalidArgumentError("top-k must be >= 1");
  if (full_attn_threshold < -1) return absl::InvalidArgumentError("full-attention threshold must be >= 0");
  if (max_kv_cache_size < 0) return absl::InvalidArgumentError("max_kv_cache_size must be >= 0");
  if (kv_cache_window_size < 0) return absl::InvalidArgumentError("kv_cache_window_size must be >= 0");
  if (context_length < 0) return absl::InvalidArgumentError("ctx_len must be >= 0");
  if (max_kv_cache_size > 0 && min_kv_cache_size <= kv_cache_window_size)
    return absl::InvalidArgumentError(absl::StrCat(
        "min_kv_cache_size (", min_kv_cache_size, ") must exceed kv_cache_window_size (",
        kv_cache_window_size, ") when compression is on"));
  return absl::OkStatus();
}

absl::Status ApplySparseAttnJson(const std::string& json_text, SparseAttnConfig* cfg) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("sparse-attention config is not a JSON object");
  auto get_int = [&](const char* key, int* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    const auto& v = j[key];
    if (!v.is_number_integer()) return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be an integer"));
    long long x = v.get<long long>();
    if (x < -1 || x > (1LL << 30)) return absl::InvalidArgumentError(absl::StrCat("'", key, "' out of range"));
    *out = static_cast<int>(x);
    return absl::OkStatus();
  };
  auto get_str = [&](const char* key, std::string* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_string()) return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be a string"));
    *out = j[key].get<std::string>();
    return absl::OkStatus();
  };
  static const char* kKnown[] = {"chunk_size", "topk", "full_attn_threshold", "prefill_attn_mode",
                                 "decode_attn_mode", "attn_mode", "max_kv_cache_size",
                                 "kv_cache_window_size", "min_kv_cache_size", "reference",
                                 "moba_chunk_size", "moba_topk", "attn_chunk_size", "attn_topk",
                                 "short_sequence_criteria", "ctx_len", "context_length"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (const char* k : kKnown) ok |= (it.key() == k);
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("unknown sparse-attention config key '", it.key(), "'"));
  }
  // Package spellings are accepted as aliases.
  for (const char* k : {"chunk_size", "moba_chunk_size", "attn_chunk_size"}) {
    auto s = get_int(k, &cfg->chunk_size); if (!s.ok()) return s;
  }
  for (const char* k : {"topk", "moba_topk", "attn_topk"}) {
    auto s = get_int(k, &cfg->topk); if (!s.ok()) return s;
  }
  for (const char* k : {"full_attn_threshold", "short_sequence_criteria"}) {
    auto s = get_int(k, &cfg->full_attn_threshold); if (!s.ok()) return s;
  }
  if (auto s = get_int("max_kv_cache_size", &cfg->max_kv_cache_size); !s.ok()) return s;
  if (auto s = get_int("kv_cache_window_size", &cfg->kv_cache_window_size); !s.ok()) return s;
  if (auto s = get_int("min_kv_cache_size", &cfg->min_kv_cache_size); !s.ok()) return s;
  for (const char* k : {"ctx_len", "context_length"}) {
    auto s = get_int(k, &cfg->context_length); if (!s.ok()) return s;
  }
  std::string str;
  for (const char* k : {"decode_attn_mode", "attn_mode"}) {
    str.clear();
    if (auto s = get_str(k, &str); !s.ok()) return s;
    if (str.empty()) continue;
    if (str == "sparse") cfg->decode_mode = AttnDecodeMode::kSparse;
    else if (str == "full") cfg->decode_mode = AttnDecodeMode::kFull;
    else return absl::InvalidArgumentError(absl::StrCat("'", k, "' must be sparse or full, got '", str, "'"));
  }
  str.clear();
  if (auto s = get_str("prefill_attn_mode", &str); !s.ok()) return s;
  if (str == "chunk") cfg->prefill_mode = AttnPrefillMode::kChunk;
  else if (str == "full") cfg->prefill_mode = AttnPrefillMode::kFull;
  else if (!str.empty()) return absl::InvalidArgumentError("'prefill_attn_mode' must be chunk or full");
  str.clear();
  if (j.contains("reference")) {
    if (j["reference"].is_string()) str = j["reference"].get<std::string>();
    else if (j["reference"].is_number()) str = j["reference"].dump();
    if (str == "0.1") cfg->rules = ReferenceRules::k01;
    else if (str == "0.2") cfg->rules = ReferenceRules::k02;
    else return absl::InvalidArgumentError("'reference' must be \"0.1\" or \"0.2\"");
  }
  return cfg->Validate();
}

std::vector<int> BlockOrder(const ModelShape& shape) {
  std::vector<int> order;
  const int R = shape.n_rwkv_layer, M = shape.n_attn_layer;
  if (M == 0) {
    for (int i = 0; i < R; ++i) order.push_back(i);
  } else if (M == 1) {
    for (int i = 0; i < R; ++i) order.push_back(i);
    order.push_back(-1);
  } else {
    const int interval = R / M;  // blocks past M*interval are not run (reference quirk)
    for (int j = 0; j < M; ++j) {
      for (int i = j * interval; i < (j + 1) * interval; ++i) order.push_back(i);
      order.push_back(-(j + 1));
    }
  }
  return order;
}

}  // namespace rwkvx
