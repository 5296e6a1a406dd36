// Session snapshots: a SessionState as bytes, bound to the model and sparse parameters
// that produced it. Pure functions; safe from any thread. Parsing never trusts the input:
// every size is checked against the buffer before use (fuzzed: tests/fuzz/fuzz_snapshot.cc).
//
// Byte layout (all integers little-endian; docs/SNAPSHOT.md):
//   0   8  magic "RWKVXSS\0"
//   8   4  format version (1)
//   12  4  header length H
//   16  H  header JSON: {"model": {"name", "fingerprint", "vocab", "n_embd", "head_size",
//          "n_rwkv_layer", "n_attn_layer"}, "sparse": {...}, "tokens_seen": N,
//          "kv_rows": [ct per sparse block], "pending_tokens": [ids] (optional),
//          "owner": replica id, "generation": N (optional: who wrote a --session-dir file)}
//   ..     payload float32: per RWKV block att_prev[C], wkv[H*N*N], ffn_prev[C];
//          per sparse block k[ct*C], v[ct*C], ffn_prev[C]
//   end-4  CRC-32 (zlib) of every byte before it
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/session_state.h"

namespace rwkvx {

inline constexpr uint32_t kSnapshotVersion = 1;

// A 64-bit identity of a model: its shape and a strided sample of every weight tensor.
// Stable across processes and machines for the same weights.
uint64_t ModelFingerprint(const Model& m);

// Who wrote a snapshot file of a shared --session-dir (docs/SESSIONS.md, "Replicas"): the
// writing replica's id and its lease generation. Snapshots without them (older files,
// client uploads) read as {"", 0}.
struct SnapshotOwner {
  std::string owner;
  uint64_t generation = 0;
};

// `pending` (optional): token ids the owner has accepted but not yet fed to the state
// (a server session's last sampled token, appended text); written to the header as
// "pending_tokens" and read back by ParseSnapshot (absent = none). `owner` (optional):
// the "owner" / "generation" header fields.
std::string SerializeSnapshot(const Model& m, const SessionState& st,
                              const std::vector<int32_t>* pending = nullptr,
                              const SnapshotOwner* owner = nullptr);

// `bytes` (a snapshot that parsed) with "owner" / "generation" set in its header and the
// CRC recomputed; the state and pending tokens are unchanged. InvalidArgument if the
// header is unreadable.
absl::StatusOr<std::string> StampSnapshot(std::string_view bytes, const SnapshotOwner& owner);

// The owner fields of a snapshot's header; `head` may be just the first bytes of the file
// (the header). nullopt if the header is unreadable.
std::optional<SnapshotOwner> SnapshotOwnerOf(std::string_view head);

// Refuses (InvalidArgument / FailedPrecondition, with the reason) a damaged snapshot, one
// from another model or format version, or one made with other sparse parameters.
absl::StatusOr<SessionState> ParseSnapshot(const Model& m, std::string_view bytes,
                                           std::vector<int32_t>* pending = nullptr);

}  // namespace rwkvx
