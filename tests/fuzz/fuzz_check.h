// Shared checks for the checkpoint fuzz targets: whatever a reader accepts must be
// self-consistent (bytes == numel * dtype size, non-negative dims). Single-threaded.
#pragma once

#include <cstdlib>

#include "absl/status/statusor.h"
#include "engine/tensor.h"

namespace rwkvx {

inline void CheckTensorsOrDie(const absl::StatusOr<TensorMap>& r) {
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();  // every error must say something
    return;
  }
  for (const auto& [name, t] : *r) {
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      if (d < 0) std::abort();
      n *= static_cast<uint64_t>(d);
    }
    if (n * static_cast<uint64_t>(DTypeSize(t.dtype)) != t.bytes.size()) std::abort();
    (void)t.ToFloat();
  }
}

}  // namespace rwkvx
