// libFuzzer target: ReadSafetensorsBytes on arbitrary bytes (header JSON + offsets).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/checkpoint/checkpoint.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = rwkvx::ReadSafetensorsBytes(std::string_view(reinterpret_cast<const char*>(data), size),
                                       "fuzz.safetensors");
  rwkvx::CheckTensorsOrDie(r);
  if (r.ok()) {  // what was read must serialise and read back identically
    auto again = rwkvx::SerializeSafetensors(*r);
    if (!again.ok()) __builtin_trap();
    auto back = rwkvx::ReadSafetensorsBytes(*again, "again");
    if (!back.ok() || back->size() != r->size()) __builtin_trap();
  }
  return 0;
}
