#include "server/random_id.h"

#include <random>

#include "absl/strings/str_format.h"

namespace rwkvx {

uint64_t RandomU64() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

std::string RandomId(std::string_view prefix) {
  return absl::StrFormat("%s%016x%08x", prefix, RandomU64(), static_cast<uint32_t>(RandomU64()));
}

}  // namespace rwkvx
