// libFuzzer target: ReadPthBytes on arbitrary bytes (zip + pickle + tensor views).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/checkpoint/checkpoint.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = rwkvx::ReadPthBytes(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.pth");
  rwkvx::CheckTensorsOrDie(r);
  return 0;
}
