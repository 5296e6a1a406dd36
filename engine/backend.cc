// engine::Backend helpers shared by every backend: the backend-lost error classification.
#include "engine/backend.h"

#include "absl/strings/cord.h"

namespace rwkvx {
namespace {

constexpr absl::string_view kLostPayload = "rwkvx.backend/lost";

}  // namespace

absl::Status BackendLostError(absl::string_view message) {
  absl::Status s = absl::InternalError(message);
  s.SetPayload(kLostPayload, absl::Cord("1"));
  return s;
}

bool IsBackendLost(const absl::Status& s) { return s.GetPayload(kLostPayload).has_value(); }

}  // namespace rwkvx
