#include "server/scheduling/stop_text.h"

#include <algorithm>

namespace rwkvx {

StopTextMatcher::StopTextMatcher(std::vector<std::string> stops) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopTextMatcher::Add(std::string_view piece, bool* stopped) {
  *stopped = false;
  held_.append(piece);
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  // Emitted text never ends with a stop-string prefix, so a match starts inside held_.
  size_t best = std::string::npos;
  for (const auto& s : stops_) best = std::min(best, held_.find(s));
  if (best != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  size_t hold = 0;
  for (const auto& s : stops_) {
    size_t maxk = std::min(s.size() - 1, held_.size());
    for (size_t k = maxk; k > hold; --k) {
      if (std::string_view(held_).substr(held_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopTextMatcher::Finish() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace rwkvx
