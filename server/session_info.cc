#include "server/session_info.h"

namespace rwkvx {

const char* SessionTierName(SessionTier t) {
  switch (t) {
    case SessionTier::kBackend: return "backend";
    case SessionTier::kHost: return "host";
    case SessionTier::kDisk: return "disk";
  }
  return "?";
}

}  // namespace rwkvx
