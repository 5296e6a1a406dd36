// JsonNestingWithin: a linear pre-check of JSON nesting depth (objects and arrays,
// strings skipped), run before nlohmann::json builds a value tree from untrusted text.
// Pure function; any thread.
#pragma once

#include <string_view>

namespace rwkvx {

inline bool JsonNestingWithin(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escape = false;
  for (char c : text) {
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

}  // namespace rwkvx
