// DType helpers and IEEE half / bfloat16 conversions. Pure functions, thread-safe.
#include "engine/tensor.h"

#include <cstring>

namespace rwkvx {

namespace {

uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

int DTypeSize(DType d) {
  switch (d) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
  }
  return 0;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) {  // Inf / NaN (payload kept, shifted into the top of the float mantissa)
    return BitsFloat(sign | 0x7f800000u | (mant << 13));
  }
  if (exp == 0) {
    if (mant == 0) return BitsFloat(sign);
    // Subnormal: value = mant * 2^-24. Normalise into a float.
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    // Leading one now at bit 10; exponent is -14 - e.
    const uint32_t fexp = static_cast<uint32_t>(127 - 15 - e);
    return BitsFloat(sign | (fexp << 23) | (mant << 13));
  }
  return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
}

float BFloat16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    if (abs == 0x7f800000u) return sign | 0x7c00u;
    // NaN: keep the top payload bits, force quiet so it never becomes Inf.
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  const int32_t exp = static_cast<int32_t>(abs >> 23) - 127;  // unbiased
  if (exp > 15) return sign | 0x7c00u;                          // overflow -> Inf
  if (exp >= -14) {
    // Normal half (may round up into the next binade or to Inf; carry handles it).
    uint32_t h = (static_cast<uint32_t>(exp + 15) << 10) | ((abs >> 13) & 0x3ffu);
    const uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);  // h <= 0x7c00 (carry into Inf is correct)
  }
  // Subnormal or zero in half: value = m * 2^-24 with m in [0, 1024].
  if (exp < -25) return sign;  // below half of the smallest subnormal -> +-0
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;  // 24-bit significand
  const int shift = -exp - 1;  // value = mant * 2^(exp-23); m = mant >> (-(exp+24) + ... )
  // m = mant * 2^(exp - 23 + 24) = mant * 2^(exp + 1) = mant >> (-exp - 1)
  const uint32_t m = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  uint32_t h = m;
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

uint16_t FloatToBFloat16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign and top payload, force quiet
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  const uint32_t lsb = (u >> 16) & 1u;
  const uint32_t rounded = u + 0x7fffu + lsb;  // may carry into Inf: correct
  return static_cast<uint16_t>(rounded >> 16);
}

int64_t RawTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> RawTensor::ToFloat() const {
  const size_t es = static_cast<size_t>(DTypeSize(dtype));
  const size_t n = es ? bytes.size() / es : 0;
  std::vector<float> out(n);
  const uint8_t* p = bytes.data();
  switch (dtype) {
    case DType::kF32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = HalfToFloat(h);
      }
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = BFloat16ToFloat(h);
      }
      break;
  }
  return out;
}

}  // namespace rwkvx
