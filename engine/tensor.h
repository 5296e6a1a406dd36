// Raw tensors as read from a checkpoint file, before they become model weights.
// Plain values: no threading concerns (each instance owned by its reader / caller).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rwkvx {

enum class DType { kF32, kF16, kBF16 };

const char* DTypeName(DType d);
int DTypeSize(DType d);

// Half-precision conversions (IEEE fp16 and bfloat16), exact for every finite value.
float HalfToFloat(uint16_t h);
float BFloat16ToFloat(uint16_t b);
uint16_t FloatToHalf(float f);      // round to nearest even
uint16_t FloatToBFloat16(float f);  // round to nearest even

// A dense, row-major, little-endian tensor.
struct RawTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel() * DTypeSize(dtype) bytes

  int64_t numel() const;
  // The values widened to float32.
  std::vector<float> ToFloat() const;
};

// Tensors by their state-dict key, e.g. "rwkv.blocks.0.att.key.weight".
using TensorMap = std::map<std::string, RawTensor>;

}  // namespace rwkvx
