#include <cuda_fp8.h>

#include <algorithm>

#include "kernels/fp8.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/launch.cuh"

namespace rwkvx::kernels {
namespace {

// One block of 256 threads per row: the row's largest magnitude, then each value rounded.
__global__ void __launch_bounds__(256) QuantizeFp8RowsKernel(Fp8QuantParams p) {
  __shared__ float red[33];
  const size_t row = blockIdx.x;
  const float* w = p.w + row * p.in;
  float m = 0.f;
  for (int i = threadIdx.x; i < p.in; i += blockDim.x) m = fmaxf(m, fabsf(w[i]));
  m = WarpMax(m);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int k = 0; k < static_cast<int>(blockDim.x >> 5); ++k) t = fmaxf(t, red[k]);
    red[32] = t > 0.f ? t / (p.fmt == W8::kInt8 ? kInt8Max : kFp8Max) : 1.f;
    p.scale[row] = red[32];
  }
  __syncthreads();
  const float sc = red[32];
  if (p.fmt == W8::kInt8) {
    for (int i = threadIdx.x; i < p.in; i += blockDim.x) {
      const float v = fminf(fmaxf(w[i] / sc, -kInt8Max), kInt8Max);
      p.q[row * p.in + i] = static_cast<uint8_t>(static_cast<int8_t>(__float2int_rn(v)));
    }
  } else {
    for (int i = threadIdx.x; i < p.in; i += blockDim.x)
      p.q[row * p.in + i] = __nv_cvt_float_to_fp8(w[i] / sc, __NV_SATFINITE, __NV_E4M3);
  }
}

// 16 values a thread: one 16-byte load of q, two 16-byte stores.
__global__ void __launch_bounds__(256) DequantFp8Kernel(Fp8DequantParams p) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  const size_t n16 = static_cast<size_t>(p.rows) * p.in / 16;
  for (size_t g = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; g < n16;
       g += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t e = g * 16;
    const float sc = p.scale[e / p.in];
    const uint4 u = reinterpret_cast<const uint4*>(p.q)[g];
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    uint32_t o[8];
    float fi[16];
    if (p.fmt == W8::kInt8)
#pragma unroll
      for (int k = 0; k < 4; ++k) Int8x4ToFloat(w[k], fi + 4 * k);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float2 f;
      if (p.fmt == W8::kInt8) {
        f = make_float2(fi[2 * k], fi[2 * k + 1]);
      } else {
        const __nv_fp8x2_storage_t pair = static_cast<__nv_fp8x2_storage_t>((w[k / 2] >> (16 * (k % 2))) & 0xffffu);
        f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
      }
      if (p.bf16) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(f.x * sc, f.y * sc);
        o[k] = *reinterpret_cast<const uint32_t*>(&h);
      } else {
        const __half2 h = __floats2half2_rn(f.x * sc, f.y * sc);
        o[k] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
    uint4* out = reinterpret_cast<uint4*>(static_cast<char*>(p.out) + e * 2);
    out[0] = make_uint4(o[0], o[1], o[2], o[3]);
    out[1] = make_uint4(o[4], o[5], o[6], o[7]);
  }
}

}  // namespace

cudaError_t LaunchQuantizeFp8Rows(const Fp8QuantParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  if (!p.w || !p.q || !p.scale || p.rows < 0 || p.in < 1) return cudaErrorInvalidValue;
  QuantizeFp8RowsKernel<<<p.rows, 256, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchDequantFp8(const Fp8DequantParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  if (!p.q || !p.scale || !p.out || p.rows < 0 || p.in < 16 || p.in % 16 != 0) return cudaErrorInvalidValue;
  const size_t n16 = static_cast<size_t>(p.rows) * p.in / 16;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>(CeilDiv(n16, 256), 132 * 16));
  RWKVX_KLAUNCH(DequantFp8Kernel, blocks, 256, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
