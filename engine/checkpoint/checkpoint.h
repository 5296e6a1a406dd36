// Checkpoint readers: the official PyTorch `.pth` (zip archive holding a pickled state
// dict, as written by torch.save for a dict of tensors) and `.safetensors`.
// Pure functions; safe to call from any thread. Every failure is a Status that names the
// file and the problem (never a crash or a hang, whatever the bytes are).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tensor.h"

namespace rwkvx {

// `name` is used in error messages only.
absl::StatusOr<TensorMap> ReadPthBytes(std::string_view bytes, std::string_view name);
absl::StatusOr<TensorMap> ReadSafetensorsBytes(std::string_view bytes, std::string_view name);

// Reads the file and dispatches on its content (zip magic -> .pth, else safetensors).
absl::StatusOr<TensorMap> ReadCheckpointFile(const std::string& path);

// Writes a safetensors file (used by tests and tools).
absl::Status WriteSafetensorsFile(const std::string& path, const TensorMap& tensors);

// The bytes WriteSafetensorsFile writes (keys sorted, header padded to 8 bytes).
absl::StatusOr<std::string> SerializeSafetensors(const TensorMap& tensors);

}  // namespace rwkvx
