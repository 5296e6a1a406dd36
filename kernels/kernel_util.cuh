// Small device helpers shared by the kernels: half/bf16 stores selected at run time,
// warp and block reductions. Header-only; no state.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace rwkvx::kernels {

// GEMM inputs are stored as fp16 or bf16 (matching the weights); `bf16` selects which.
__device__ __forceinline__ void StoreHalf(void* p, size_t i, float v, bool bf16) {
  if (bf16)
    reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else
    reinterpret_cast<__half*>(p)[i] = __float2half_rn(v);
}

__device__ __forceinline__ float LoadHalf(const void* p, size_t i, bool bf16) {
  if (bf16) return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(p)[i]);
  return __half2float(reinterpret_cast<const __half*>(p)[i]);
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, <= 1024). `scratch` >= 33 floats.
// Every thread gets the result. Contains __syncthreads: call from all threads.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.f;
  t = WarpSum(t);
  return t;
}

// Four int8 codes (one 32-bit word, byte k = code k) to float, exactly: each byte, offset by
// 128, becomes the low mantissa byte of 2^23 + b (one byte permute), then 2^23 + 128 is
// subtracted (8-bit weights, kernels/fp8.cuh).
__device__ __forceinline__ void Int8x4ToFloat(unsigned w, float* f) {
  const unsigned u = w ^ 0x80808080u;  // int8 -> uint8 + 128
#pragma unroll
  for (int k = 0; k < 4; ++k) f[k] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7540u + k)) - 8388736.f;
}

__device__ __forceinline__ float Sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

inline unsigned CeilDiv(size_t a, size_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace rwkvx::kernels
