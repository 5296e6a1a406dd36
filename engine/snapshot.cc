#include "engine/snapshot.h"

#include <zlib.h>

#include <cstring>
#include <optional>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/json_depth.h"

namespace rwkvx {
namespace {

constexpr char kMagic[8] = {'R', 'W', 'K', 'V', 'X', 'S', 'S', '\0'};

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0x100000001b3ULL;
}

uint64_t HashVec(uint64_t h, const std::vector<float>& v) {
  h = Mix(h, v.size());
  const size_t stride = std::max<size_t>(1, v.size() / 4096);
  for (size_t i = 0; i < v.size(); i += stride) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    h = Mix(h, bits);
  }
  return h;
}

nlohmann::json SparseJson(const SparseAttnConfig& a) {
  return {{"chunk_size", a.chunk_size},
          {"topk", a.topk},
          {"full_attn_threshold", a.Threshold()},
          {"prefill_attn_mode", a.prefill_mode == AttnPrefillMode::kChunk ? "chunk" : "full"},
          {"decode_attn_mode", a.decode_mode == AttnDecodeMode::kSparse ? "sparse" : "full"},
          {"max_kv_cache_size", a.max_kv_cache_size},
          {"kv_cache_window_size", a.kv_cache_window_size},
          {"min_kv_cache_size", a.min_kv_cache_size}};
}

void PutU32(std::string& s, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  s.append(b, 4);
}
void PutFloats(std::string& s, const std::vector<float>& v) {
  if (!v.empty()) s.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
uint32_t GetU32(std::string_view b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

// The header JSON of `b` (bounded: never trusts the length), or nullopt.
std::optional<nlohmann::json> HeaderOf(std::string_view b) {
  if (b.size() < 16 || std::memcmp(b.data(), kMagic, 8) != 0) return std::nullopt;
  const uint32_t hlen = GetU32(b, 12);
  if (hlen > b.size() - 16 || !JsonNestingWithin(b.substr(16, hlen), 8)) return std::nullopt;
  nlohmann::json hdr = nlohmann::json::parse(b.substr(16, hlen), nullptr, false);
  if (hdr.is_discarded() || !hdr.is_object()) return std::nullopt;
  return hdr;
}

// The total size the header implies for model `m`, if the header is readable (any later
// check may still refuse the snapshot). Never trusts sizes: bounded and overflow-safe.
std::optional<size_t> ExpectedSize(const Model& m, std::string_view b) {
  auto h = HeaderOf(b);
  if (!h || !h->contains("kv_rows") || !(*h)["kv_rows"].is_array()) return std::nullopt;
  const nlohmann::json& hdr = *h;
  const uint32_t hlen = GetU32(b, 12);
  const auto& s = m.shape;
  if (static_cast<int>(hdr["kv_rows"].size()) != s.n_attn_layer) return std::nullopt;
  const size_t C = s.n_embd, HNN = static_cast<size_t>(s.n_head) * s.head_size * s.head_size;
  size_t need = 16 + hlen + 4 + s.n_rwkv_layer * (2 * C + HNN) * sizeof(float);
  for (const auto& r : hdr["kv_rows"]) {
    if (!r.is_number_integer() || r.get<long long>() < 0 || r.get<long long>() > (1LL << 26)) return std::nullopt;
    need += (2 * static_cast<size_t>(r.get<long long>()) * C + C) * sizeof(float);
  }
  return need;
}

}  // namespace

absl::StatusOr<std::string> StampSnapshot(std::string_view b, const SnapshotOwner& owner) {
  auto hdr = HeaderOf(b);
  if (!hdr || b.size() < 20 + GetU32(b, 12)) return absl::InvalidArgumentError("invalid snapshot: unreadable header");
  const size_t payload_at = 16 + GetU32(b, 12);
  (*hdr)["owner"] = owner.owner;
  (*hdr)["generation"] = owner.generation;
  const std::string h = hdr->dump();
  std::string out(b.substr(0, 12));
  PutU32(out, static_cast<uint32_t>(h.size()));
  out += h;
  out.append(b.substr(payload_at, b.size() - 4 - payload_at));
  const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data()), out.size());
  PutU32(out, crc);
  return out;
}

std::optional<SnapshotOwner> SnapshotOwnerOf(std::string_view head) {
  auto hdr = HeaderOf(head);
  if (!hdr) return std::nullopt;
  SnapshotOwner o;
  if (hdr->contains("owner") && (*hdr)["owner"].is_string()) o.owner = (*hdr)["owner"].get<std::string>();
  if (hdr->contains("generation") && (*hdr)["generation"].is_number_unsigned())
    o.generation = (*hdr)["generation"].get<uint64_t>();
  return o;
}

uint64_t ModelFingerprint(const Model& m) {
  const auto& s = m.shape;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int v : {s.vocab, s.n_embd, s.head_size, s.n_rwkv_layer, s.n_attn_layer, s.ffn_dim, s.rank_w, s.rank_a,
                s.rank_v, s.rank_g})
    h = Mix(h, static_cast<uint64_t>(v));
  h = HashVec(h, m.emb);
  h = HashVec(h, m.head);
  for (const auto& b : m.rwkv)
    for (const auto* v : {&b.Wr, &b.Wk, &b.Wv, &b.Wo, &b.ffn_key, &b.ffn_value, &b.w1, &b.a1, &b.g1, &b.r_k})
      h = HashVec(h, *v);
  for (const auto& b : m.attn_blocks)
    for (const auto* v : {&b.Wq, &b.Wk, &b.Wv, &b.Wo, &b.ffn_key, &b.ffn_value}) h = HashVec(h, *v);
  return h;
}

std::string SerializeSnapshot(const Model& m, const SessionState& st,
                              const std::vector<int32_t>* pending, const SnapshotOwner* owner) {
  const auto& s = m.shape;
  nlohmann::json kv = nlohmann::json::array();
  for (const auto& a : st.attn) kv.push_back(a.ct);
  nlohmann::json hdr = {
      {"model",
       {{"name", m.name},
        {"fingerprint", absl::StrFormat("%016x", ModelFingerprint(m))},
        {"vocab", s.vocab},
        {"n_embd", s.n_embd},
        {"head_size", s.head_size},
        {"n_rwkv_layer", s.n_rwkv_layer},
        {"n_attn_layer", s.n_attn_layer}}},
      {"sparse", SparseJson(m.attn)},
      {"tokens_seen", st.tokens_seen},
      {"kv_rows", kv}};
  if (pending && !pending->empty()) hdr["pending_tokens"] = *pending;
  if (owner) {
    hdr["owner"] = owner->owner;
    hdr["generation"] = owner->generation;
  }
  const std::string h = hdr.dump();
  std::string out(kMagic, 8);
  PutU32(out, kSnapshotVersion);
  PutU32(out, static_cast<uint32_t>(h.size()));
  out += h;
  for (const auto& l : st.rwkv) {
    PutFloats(out, l.att_prev);
    PutFloats(out, l.wkv);
    PutFloats(out, l.ffn_prev);
  }
  for (const auto& a : st.attn) {
    PutFloats(out, a.k);
    PutFloats(out, a.v);
    PutFloats(out, a.ffn_prev);
  }
  const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data()), out.size());
  PutU32(out, crc);
  return out;
}

absl::StatusOr<SessionState> ParseSnapshot(const Model& m, std::string_view b,
                                           std::vector<int32_t>* pending) {
  auto bad = [](const std::string& why) { return absl::InvalidArgumentError("invalid snapshot: " + why); };
  if (b.size() < 20 || std::memcmp(b.data(), kMagic, 8) != 0) return bad("not a rwkvx session snapshot");
  const uint32_t version = GetU32(b, 8);
  if (version != kSnapshotVersion)
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot format version ", version, " is not supported (this server reads ", kSnapshotVersion, ")"));
  // A cut-off snapshot fails the checksum too; say so when the header tells its size.
  if (auto need = ExpectedSize(m, b); need && *need > b.size())
    return bad(absl::StrCat("truncated: ", b.size(), " of ", *need, " bytes"));
  const uint32_t crc = GetU32(b, b.size() - 4);
  if (crc != crc32(0L, reinterpret_cast<const Bytef*>(b.data()), b.size() - 4))
    return bad("checksum mismatch (damaged or truncated)");
  const uint32_t hlen = GetU32(b, 12);
  if (hlen > b.size() - 20) return bad("header length past the end");
  nlohmann::json hdr = nlohmann::json::parse(b.substr(16, hlen), nullptr, false);
  if (hdr.is_discarded() || !hdr.is_object() || !hdr.contains("model") || !hdr["model"].is_object() ||
      !hdr.contains("kv_rows") || !hdr["kv_rows"].is_array() || !hdr.contains("tokens_seen") ||
      !hdr["tokens_seen"].is_number_integer() || !hdr.contains("sparse"))
    return bad("malformed header");
  const auto& mj = hdr["model"];
  if (!mj.contains("fingerprint") || !mj["fingerprint"].is_string() ||
      mj["fingerprint"].get<std::string>() != absl::StrFormat("%016x", ModelFingerprint(m)))
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot was made by another model (",
        mj.contains("name") && mj["name"].is_string() ? mj["name"].get<std::string>() : "?", ")"));
  if (hdr["sparse"] != SparseJson(m.attn))
    return absl::FailedPreconditionError("snapshot was made with other sparse-attention parameters");
  const auto& s = m.shape;
  const size_t C = s.n_embd, HNN = static_cast<size_t>(s.n_head) * s.head_size * s.head_size;
  if ((int)hdr["kv_rows"].size() != s.n_attn_layer) return bad("wrong number of sparse blocks");
  size_t need = s.n_rwkv_layer * (2 * C + HNN) * sizeof(float);
  std::vector<int> rows;
  for (const auto& r : hdr["kv_rows"]) {
    if (!r.is_number_integer() || r.get<long long>() < 0 || r.get<long long>() > (1LL << 26))
      return bad("bad KV row count");
    rows.push_back(static_cast<int>(r.get<long long>()));
    need += (2 * static_cast<size_t>(rows.back()) * C + C) * sizeof(float);
  }
  const size_t payload = b.size() - 20 - hlen;
  if (payload != need) return bad(absl::StrCat("payload is ", payload, " bytes, expected ", need));
  SessionState st;
  size_t off = 16 + hlen;
  auto take = [&](size_t n) {
    std::vector<float> v(n);
    if (n > 0) std::memcpy(v.data(), b.data() + off, n * sizeof(float));
    off += n * sizeof(float);
    return v;
  };
  st.rwkv.resize(s.n_rwkv_layer);
  for (auto& l : st.rwkv) {
    l.att_prev = take(C);
    l.wkv = take(HNN);
    l.ffn_prev = take(C);
  }
  st.attn.resize(s.n_attn_layer);
  for (int j = 0; j < s.n_attn_layer; ++j) {
    st.attn[j].ct = rows[j];
    st.attn[j].k = take(rows[j] * C);
    st.attn[j].v = take(rows[j] * C);
    st.attn[j].ffn_prev = take(C);
  }
  st.tokens_seen = hdr["tokens_seen"].get<long long>();
  std::vector<int32_t> pend;
  if (hdr.contains("pending_tokens")) {
    const auto& pj = hdr["pending_tokens"];
    if (!pj.is_array() || pj.size() > (1u << 24)) return bad("bad pending_tokens");
    for (const auto& t : pj) {
      if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= s.vocab)
        return bad("a pending token id is outside the vocabulary");
      pend.push_back(static_cast<int32_t>(t.get<long long>()));
    }
  }
  if (pending) *pending = std::move(pend);
  return st;
}

}  // namespace rwkvx
