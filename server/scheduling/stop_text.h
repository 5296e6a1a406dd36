// Stop-string handling for one generation: accumulates decoded text and releases only the
// part that cannot be the beginning of a stop string. Per request, one thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rwkvx {

class StopTextMatcher {
 public:
  explicit StopTextMatcher(std::vector<std::string> stops);
  // Adds decoded text; returns the text now safe to emit. When a stop string completes,
  // sets *stopped, returns the text before it and drops the rest.
  std::string Add(std::string_view piece, bool* stopped);
  // End of generation (no stop string found): all held-back text.
  std::string Finish();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace rwkvx
