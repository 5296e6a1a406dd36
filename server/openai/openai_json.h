// Small helpers for reading OpenAI request bodies (nlohmann::json): the 400 status and
// a field that is present and not null. Header-only; any thread.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace rwkvx::openai_json {

inline absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

// The field `name` of object `j`, or null when it is missing or JSON null.
inline const nlohmann::json* Present(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace rwkvx::openai_json
