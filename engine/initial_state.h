// Initial states ("state tuning"): a file of trained per-block RWKV-7 wkv states that a
// session starts from instead of zeros. The layout is RWKV-PEFT's state-tuning output: one
// tensor per RWKV block, key `blocks.{i}.att.time_state` (also accepted with the RWKV-X
// checkpoint's `rwkv.` prefix), shape [H, N, N] with row = value index and column = key
// index, the layout of SessionState::wkv and of the official package's state (fp32, fp16
// or bf16; .pth or .safetensors). Token-shift vectors and sparse-attention caches start
// empty as in a zero state. docs/API.md ("Initial states") has the flag and the field.
// Pure functions; any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/session_state.h"
#include "engine/tensor.h"

namespace rwkvx {

// The session state a file's tensors describe for a model of `shape`: every RWKV block
// must have its [H, N, N] time_state, finite; any other key is an error (a file of the
// wrong kind, e.g. a full checkpoint, is refused by name).
absl::StatusOr<SessionState> InitialStateFromTensors(const TensorMap& tensors, const ModelShape& shape,
                                                     const std::string& name);
absl::StatusOr<SessionState> LoadInitialStateFile(const std::string& path, const ModelShape& shape);

}  // namespace rwkvx
