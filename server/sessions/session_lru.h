// The eviction policy of stored sessions: which idle sessions move down one tier
// (backend memory -> host memory as snapshot bytes -> disk) so that a tier fits its byte
// budget. Least recently used first; busy sessions (a request is using them) never move.
// A pure function over a list; callable from any thread (the scheduler's loop uses it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace rwkvx {

struct LruEntry {
  std::string name;
  size_t bytes = 0;  // bytes the session holds in the tier being balanced
  absl::Time last_used;
  bool busy = false;
};

struct EvictionPlan {
  std::vector<std::string> victims;  // oldest first
  bool fits = true;  // false: even moving every idle session leaves the tier over budget
};

// Sessions (all in one tier) to move out so that sum(bytes) + extra <= budget.
inline EvictionPlan PlanEvictions(std::vector<LruEntry> entries, size_t budget, size_t extra = 0) {
  EvictionPlan plan;
  size_t total = extra;
  for (const auto& e : entries) total += e.bytes;
  if (total <= budget) return plan;
  std::stable_sort(entries.begin(), entries.end(),
                   [](const LruEntry& a, const LruEntry& b) { return a.last_used < b.last_used; });
  for (const auto& e : entries) {
    if (total <= budget) break;
    if (e.busy) continue;
    plan.victims.push_back(e.name);
    total -= e.bytes;
  }
  plan.fits = total <= budget;
  return plan;
}

}  // namespace rwkvx
