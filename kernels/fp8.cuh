// 8-bit weights (CudaBackendOptions::fp8_weights, `--weights fp8`): a torch Linear weight
// [out, in] stored as FP8 E4M3 (1 sign, 4 exponent, 3 mantissa bits; largest finite 448)
// with one float32 scale per output row: w[o, i] ~ e4m3(q[o, i]) * scale[o], where
// scale[o] = max_i |w[o, i]| / 448 (1 for an all-zero row) and q rounds w / scale to the
// nearest E4M3 value (ties to even, saturating). Every value keeps 4 significant bits
// (relative rounding <= 2^-4) down to 2^-6 * scale, below that steps of 2^-9 * scale.
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

constexpr float kFp8Max = 448.f;  // largest finite E4M3 value

struct Fp8QuantParams {
  const float* w = nullptr;  // [rows, in] float32
  uint8_t* q = nullptr;      // [rows, in] E4M3 bytes
  float* scale = nullptr;    // [rows]
  int rows = 0, in = 0;
};
cudaError_t LaunchQuantizeFp8Rows(const Fp8QuantParams& p, cudaStream_t s);

struct Fp8DequantParams {
  const uint8_t* q = nullptr;    // [rows, in] E4M3 bytes
  const float* scale = nullptr;  // [rows]
  void* out = nullptr;           // [rows, in] fp16/bf16
  bool bf16 = false;
  int rows = 0, in = 0;          // in % 16 == 0
};
cudaError_t LaunchDequantFp8(const Fp8DequantParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
