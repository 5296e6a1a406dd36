// The trained demo model compiled into the binary: a ~5M-parameter byte-level RWKV-X
// (server/embedded/MODEL_CARD.md says how it was trained and how well it retrieves).
// The bytes are read-only data of the executable; the functions are safe from any thread.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/model.h"

namespace rwkvx {

inline constexpr const char* kEmbeddedModelName = "rwkvx-embedded-demo-bytes";

// The checkpoint as committed (official .pth layout, fp16) and its JSON sidecar.
std::string_view EmbeddedModelPth();
std::string_view EmbeddedModelConfig();

// Parses the embedded checkpoint and applies its sidecar to model->attn. The caller owns
// the result (flags may still override model->attn afterwards).
absl::StatusOr<std::shared_ptr<Model>> LoadEmbeddedModel();

}  // namespace rwkvx
