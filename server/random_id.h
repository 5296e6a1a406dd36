// Random identifiers and seeds: the one generator the server uses for names it picks
// itself (completion ids "cmpl-…", session names "sess-…", client-held sessions
// "client-state-…") and for the sampling seed of a request that gives none. Not for
// secrets. Pure functions over a per-thread generator seeded from std::random_device;
// callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rwkvx {

// 64 random bits.
uint64_t RandomU64();

// `prefix` followed by 24 lowercase hex digits (96 random bits), e.g. "sess-1f…".
std::string RandomId(std::string_view prefix);

}  // namespace rwkvx
