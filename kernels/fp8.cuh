// 8-bit weights (CudaBackendOptions::fp8_weights / int8_weights, `--weights fp8|int8`): a
// torch Linear weight [out, in] stored as one byte a value with one float32 scale per
// output row, w[o, i] ~ decode(q[o, i]) * scale[o], in one of two formats (W8):
//  - kE4M3: FP8 E4M3 (1 sign, 4 exponent, 3 mantissa bits; largest finite 448);
//    scale[o] = max_i |w[o, i]| / 448 and q the nearest E4M3 value of w / scale (ties to
//    even, saturating). Every value keeps 4 significant bits (relative rounding <= 2^-4)
//    down to 2^-6 * scale, below that steps of 2^-9 * scale.
//  - kInt8: a signed integer in [-127, 127]; scale[o] = max_i |w[o, i]| / 127 and q =
//    w / scale rounded to the nearest integer (ties to even). A uniform step of scale: an
//    absolute rounding of at most scale / 2 (for a row of Gaussian-like weights, ~1% of
//    their RMS, against ~3.6% for E4M3's relative rounding).
// An all-zero row has scale 1.
//
// QuantizeFp8Rows makes the pair from float32 rows (model upload); DequantFp8 writes the
// half (fp16/bf16) matrix q * scale back (rounded once, to nearest) for steps whose
// products run as cuBLAS GEMMs; the GEMV (kernels/gemv.cuh) reads q and scale directly.
// Threads: the launchers enqueue on the caller's stream and return at once; call them from
// the thread that owns that stream. Params are plain values; every pointer is device
// memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rwkvx::kernels {

constexpr float kFp8Max = 448.f;   // largest finite E4M3 value
constexpr float kInt8Max = 127.f;  // largest int8 code used (symmetric: -128 never appears)
enum class W8 : int { kE4M3 = 0, kInt8 = 1 };

struct Fp8QuantParams {
  const float* w = nullptr;  // [rows, in] float32
  uint8_t* q = nullptr;      // [rows, in] bytes in format fmt
  float* scale = nullptr;    // [rows]
  W8 fmt = W8::kE4M3;
  int rows = 0, in = 0;
};
cudaError_t LaunchQuantizeFp8Rows(const Fp8QuantParams& p, cudaStream_t s);

struct Fp8DequantParams {
  const uint8_t* q = nullptr;    // [rows, in] bytes in format fmt
  const float* scale = nullptr;  // [rows]
  void* out = nullptr;           // [rows, in] fp16/bf16
  W8 fmt = W8::kE4M3;
  bool bf16 = false;
  int rows = 0, in = 0;          // in % 16 == 0
};
cudaError_t LaunchDequantFp8(const Fp8DequantParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
