// Built when nvcc is absent: the CUDA backend is reported unavailable.
#include "engine/backend.h"

namespace rwkvx {

std::string CudaUnavailableReason() { return "this build has no CUDA support (nvcc was not found)"; }

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(std::shared_ptr<const Model>,
                                                         const CudaBackendOptions&) {
  return absl::UnavailableError(CudaUnavailableReason());
}

}  // namespace rwkvx
