// Tests for engine/tensor.cc: dtype helpers and exhaustive fp16 / bf16 conversions
// against independent reference computations (ldexp for decoding, exact nearest-value
// search in double precision for encoding).
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/tensor.h"
#include "gtest/gtest.h"

namespace rwkvx {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Reference fp16 decode: sign * mant * 2^(exp - 25) per the IEEE definition.
double RefHalf(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0x1f) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// Reference fp16 encode for a finite float: nearest value among all finite halves
// (ties to an even mantissa), with values >= 65520 going to infinity.
uint16_t RefFloatToHalf(float f) {
  const double x = std::fabs(static_cast<double>(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (x >= 65520.0) return sign | 0x7c00;
  // Binary search the largest positive half <= x (positive halves are ordered by bits).
  int lo = 0, hi = 0x7bff;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (RefHalf(static_cast<uint16_t>(mid)) <= x) lo = mid;
    else hi = mid - 1;
  }
  if (lo == 0x7bff) return sign | 0x7bff;  // x in [65504, 65520)
  const double a = RefHalf(static_cast<uint16_t>(lo)), b = RefHalf(static_cast<uint16_t>(lo + 1));
  int pick;
  if (x - a < b - x) pick = lo;
  else if (x - a > b - x) pick = lo + 1;
  else pick = (lo & 1) ? lo + 1 : lo;
  return sign | static_cast<uint16_t>(pick);
}

// Reference bf16 encode for a finite float: the two candidates around f, compared in double.
uint16_t RefFloatToBF16(float f) {
  const uint32_t u = Bits(f);
  const uint16_t down = static_cast<uint16_t>(u >> 16);
  if ((u & 0xffff) == 0) return down;
  const double x = std::fabs(static_cast<double>(f));
  const double a = std::fabs(static_cast<double>(FromBits(static_cast<uint32_t>(down) << 16)));
  // The next bf16 away from zero (0x7f7f + 1 = 0x7f80 = inf, which is correct).
  const uint16_t up = static_cast<uint16_t>(down + 1);
  const double b = ((up & 0x7fff) == 0x7f80) ? std::ldexp(1.0, 128)  // "next" past max: 2^128
                                              : std::fabs(static_cast<double>(FromBits(static_cast<uint32_t>(up) << 16)));
  if (x - a < b - x) return down;
  if (x - a > b - x) return up;
  return (down & 1) ? up : down;
}

TEST(TensorTest, DTypeNamesAndSizes) {
  EXPECT_STREQ(DTypeName(DType::kF32), "F32");
  EXPECT_STREQ(DTypeName(DType::kF16), "F16");
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kF16), 2);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
}

TEST(TensorTest, HalfToFloatExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double ref = RefHalf(static_cast<uint16_t>(h));
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), ref) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;  // -0 stays -0
    }
  }
}

TEST(TensorTest, HalfRoundTripExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    const uint16_t back = FloatToHalf(f);
    if (std::isnan(f)) {
      ASSERT_EQ(back & 0x7c00, 0x7c00) << std::hex << h;
      ASSERT_NE(back & 0x3ff, 0) << std::hex << h;  // still NaN, not Inf
      ASSERT_EQ(back & 0x8000, h & 0x8000);
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

// Every midpoint between adjacent halves (and the floats just around it) rounds as the
// reference says: ties to even, otherwise to the nearer one.
TEST(TensorTest, FloatToHalfMidpointsExhaustive) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    for (uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const double a = RefHalf(static_cast<uint16_t>(h)), b = h + 1 == 0x7c00 ? 65520.0 : RefHalf(static_cast<uint16_t>(h + 1));
      const float mid = static_cast<float>((a + b) / 2);  // exact: 12 significant bits
      ASSERT_EQ(static_cast<double>(mid), (a + b) / 2);
      for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
        const float sf = sign ? -f : f;
        ASSERT_EQ(FloatToHalf(sf), RefFloatToHalf(sf)) << std::hex << h << " " << sf;
      }
    }
  }
}

TEST(TensorTest, FloatToHalfSpecials) {
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(INFINITY), 0x7c00);
  EXPECT_EQ(FloatToHalf(-INFINITY), 0xfc00);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65519.996f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // tie rounds to even = Inf
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);   // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);   // tie to even (0)
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 ulp -> 2 (even)
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToHalf(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into normals
  const uint16_t qnan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(qnan & 0x7c00, 0x7c00);
  EXPECT_NE(qnan & 0x3ff, 0);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(FromBits(0x7f800001)))));  // signalling, tiny payload
}

TEST(TensorTest, FloatToHalfRandomAgainstReference) {
  std::mt19937 rng(42);
  for (int i = 0; i < 300000; ++i) {
    uint32_t u = rng();
    // Bias towards the fp16 range: exponents 100..145 half of the time.
    if (i % 2) u = (u & 0x807fffffu) | ((100u + rng() % 46) << 23);
    const float f = FromBits(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), RefFloatToHalf(f)) << std::hex << u;
  }
#if defined(__FLT16_MAX__)
  // The compiler's own conversion as a second reference, on a stride over all floats.
  for (uint64_t u = 0; u < (1ull << 32); u += 4093) {
    const float f = FromBits(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    const _Float16 c = static_cast<_Float16>(f);
    uint16_t cb;
    std::memcpy(&cb, &c, 2);
    ASSERT_EQ(FloatToHalf(f), cb) << std::hex << u;
  }
#endif
}

TEST(TensorTest, BFloat16Exhaustive) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BFloat16ToFloat(static_cast<uint16_t>(b));
    ASSERT_EQ(Bits(f), b << 16);  // bf16 is the top half of a float, by definition
    const uint16_t back = FloatToBFloat16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(BFloat16ToFloat(back))) << std::hex << b;
      ASSERT_EQ(back & 0x8000, b & 0x8000);
    } else {
      ASSERT_EQ(back, b) << std::hex << b;
    }
    if (b >= 0x7f80 && b < 0x8000) continue;  // Inf/NaN: no upper neighbour
    if (b >= 0xff80) continue;
    // Midpoint to the next bf16 away from zero, and the floats beside it.
    const uint32_t mid = (b << 16) | 0x8000u;
    for (uint32_t u : {mid, mid - 1, mid + 1}) {
      const float x = FromBits(u);
      ASSERT_EQ(FloatToBFloat16(x), RefFloatToBF16(x)) << std::hex << u;
    }
  }
}

TEST(TensorTest, FloatToBFloat16RandomAndSpecials) {
  std::mt19937 rng(7);
  for (int i = 0; i < 300000; ++i) {
    const float f = FromBits(rng());
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBFloat16(f), RefFloatToBF16(f)) << f;
  }
  EXPECT_EQ(FloatToBFloat16(INFINITY), 0x7f80);
  EXPECT_EQ(FloatToBFloat16(-INFINITY), 0xff80);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to Inf
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  const uint16_t n = FloatToBFloat16(FromBits(0x7f800001));  // NaN with payload only in low bits
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(n)));
  EXPECT_EQ(FloatToBFloat16(FromBits(0x00010000)), 0x0001);  // subnormals are kept
}

TEST(TensorTest, RawTensorNumelAndToFloat) {
  RawTensor t;
  t.dtype = DType::kF16;
  t.shape = {2, 3};
  EXPECT_EQ(t.numel(), 6);
  const float vals[6] = {0.f, -1.5f, 2.f, 65504.f, -0.f, 0.25f};
  for (float v : vals) {
    const uint16_t h = FloatToHalf(v);
    t.bytes.push_back(h & 0xff);
    t.bytes.push_back(h >> 8);
  }
  std::vector<float> f = t.ToFloat();
  ASSERT_EQ(f.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f[i], vals[i]);

  RawTensor b;
  b.dtype = DType::kBF16;
  b.shape = {3};
  for (float v : {1.f, -2.f, 0.5f}) {
    const uint16_t h = FloatToBFloat16(v);
    b.bytes.push_back(h & 0xff);
    b.bytes.push_back(h >> 8);
  }
  EXPECT_EQ(b.ToFloat(), (std::vector<float>{1.f, -2.f, 0.5f}));

  RawTensor s;  // scalar fp32
  s.bytes.resize(4);
  const float pi = 3.25f;
  std::memcpy(s.bytes.data(), &pi, 4);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.ToFloat(), std::vector<float>{3.25f});

  RawTensor e;
  e.shape = {0, 4};
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.ToFloat().empty());
}

}  // namespace
}  // namespace rwkvx
