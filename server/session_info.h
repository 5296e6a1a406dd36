// What the session API reports about one named session, and the tiers a session can
// live in. Plain values, shared by the session store, the scheduler, the service and the
// frontends (which render them); no threads, no ownership.
#pragma once

#include <cstddef>
#include <string>

#include "absl/time/time.h"

namespace rwkvx {

enum class SessionTier { kBackend, kHost, kDisk };
const char* SessionTierName(SessionTier t);  // "backend", "host", "disk"

struct StoredSessionInfo {
  std::string name;
  size_t state_bytes = 0;
  size_t kv_tokens = 0;
  long long tokens_seen = 0;  // tokens fed to the session so far
  absl::Time created;
  absl::Time last_used;
  absl::Time expires;
  bool busy = false;  // a Generate is using it now
  long long pending_tokens = 0;  // accepted tokens not yet fed (fed by the next generate)
  SessionTier tier = SessionTier::kBackend;
  bool saved = false;  // a file in --session-dir holds it (maybe older than the live state)
};

}  // namespace rwkvx
