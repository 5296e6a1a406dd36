#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>

#include "kernels/gemm_skinny.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/launch.cuh"
#include "kernels/mma.cuh"

namespace rwkvx::kernels {
namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kTile = 16;  // output rows a block (the MMA's M)

// Two floats as one fp16x2 / bf16x2 register (exact for the 8-bit codes: at most 4
// significant bits for E4M3, integers of magnitude <= 127 for int8).
template <bool kBf16>
__device__ __forceinline__ uint32_t Pack2(float a, float b) {
  if constexpr (kBf16) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// 16 8-bit codes (one 16-byte load) as 8 fp16x2 / bf16x2 registers, in order.
template <bool kBf16>
__device__ __forceinline__ void Codes16(const uint4& u, bool int8, uint32_t (&r)[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
  if (int8) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      float f[4];
      Int8x4ToFloat(w[q], f);
      r[2 * q] = Pack2<kBf16>(f[0], f[1]);
      r[2 * q + 1] = Pack2<kBf16>(f[2], f[3]);
    }
  } else {
#pragma unroll
    for (int m = 0; m < 8; ++m) {
      const __nv_fp8x2_storage_t pair = static_cast<__nv_fp8x2_storage_t>((w[m / 2] >> (16 * (m % 2))) & 0xffffu);
      const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3);
      if constexpr (kBf16) {
        const float2 f = __half22float2(__half2(h));
        r[m] = Pack2<true>(f.x, f.y);
      } else {
        r[m] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }
}

// One K window's operands for one lane: the two weight rows it feeds (g and g + 8) and
// x's rows g, g + 8, ... (one per 8-column tile). Lane t = lane % 4 of a quad holds the
// physical columns [t * E, (t + 1) * E) of the window (E = 8 half weights or 16 codes);
// MMA step j uses its columns 4j, 4j+1 as the fragment's k = 2t, 2t+1 and 4j+2, 4j+3 as
// k = 2t+8, 2t+9, for A and B alike, so every column of the window is summed once.
template <int NT>
struct Window {
  uint4 wa, wb;      // weight rows g, g + 8 (zero past the last output row)
  uint4 x[NT][2];    // x rows: [.][0] the first 8 values, [.][1] the next 8 (8-bit windows)
};

template <int NT>
__device__ __forceinline__ void LoadWindow(const GemvParams& p, bool w8, int o0, int g, int t, int rows, int win,
                                           Window<NT>& f) {
  const uint4 zero = make_uint4(0, 0, 0, 0);
  const int e = w8 ? 16 : 8;                  // columns a lane holds
  const int k = win * (w8 ? 64 : 32) + t * e;  // its first column
  const size_t wb = w8 ? 1 : 2;                // bytes a weight
  const char* w = static_cast<const char*>(p.w);
  const int oa = o0 + g, ob = o0 + g + 8;
  f.wa = oa < p.out ? *reinterpret_cast<const uint4*>(w + (static_cast<size_t>(oa) * p.in + k) * wb) : zero;
  f.wb = ob < p.out ? *reinterpret_cast<const uint4*>(w + (static_cast<size_t>(ob) * p.in + k) * wb) : zero;
  const char* x = static_cast<const char*>(p.x);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int r = nt * 8 + g;
    const uint4* xr = reinterpret_cast<const uint4*>(x + (static_cast<size_t>(r) * p.in + k) * 2);
    f.x[nt][0] = r < rows ? xr[0] : zero;
    f.x[nt][1] = (w8 && r < rows) ? xr[1] : zero;
  }
}

template <int NT, bool kBf16>
__device__ __forceinline__ void ComputeWindow(const Window<NT>& f, bool w8, bool int8, float (&c)[NT][4]) {
  if (!w8) {  // 8 half columns a lane: two MMA steps
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        Mma16816<kBf16>(c[nt], Reg(f.wa, 2 * j), Reg(f.wb, 2 * j), Reg(f.wa, 2 * j + 1), Reg(f.wb, 2 * j + 1),
                   Reg(f.x[nt][0], 2 * j), Reg(f.x[nt][0], 2 * j + 1));
    return;
  }
  uint32_t a[8], b[8];  // 16 codes a lane: four MMA steps
  Codes16<kBf16>(f.wa, int8, a);
  Codes16<kBf16>(f.wb, int8, b);
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const uint4& xv = f.x[nt][j / 2];
      Mma16816<kBf16>(c[nt], a[2 * j], b[2 * j], a[2 * j + 1], b[2 * j + 1], Reg(xv, 2 * (j % 2)),
                 Reg(xv, 2 * (j % 2) + 1));
    }
}

// Blocks are laid out job after job (ceil(out / 16) tiles per job), each tile as `slabs`
// consecutive blocks, one per slab of kSkinnySlabRows rows: the blocks that run at once
// share their weight tiles (read from memory once, then from L2) rather than their x rows.
template <int NT, bool kBf16>
__global__ void __launch_bounds__(kThreads) SkinnyKernel(GemvGroupParams gp) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float red[kWarps][kTile][NT * 8];
  const int slabs = (gp.job[0].rows + kSkinnySlabRows - 1) / kSkinnySlabRows;
  const int slab = slabs > 1 ? static_cast<int>(blockIdx.x % slabs) : 0;
  int b = slabs > 1 ? static_cast<int>(blockIdx.x / slabs) : static_cast<int>(blockIdx.x), j = 0;
  for (; j < gp.n_jobs - 1; ++j) {
    const int nb = (gp.job[j].out + kTile - 1) / kTile;
    if (b < nb) break;
    b -= nb;
  }
  GemvParams p = gp.job[j];
  if (slab > 0) {  // this block's rows: [slab * 32, min(rows, slab * 32 + 32)) as rows 0..
    const size_t r0 = static_cast<size_t>(slab) * kSkinnySlabRows;
    p.x = static_cast<const char*>(p.x) + r0 * p.in * 2;
    if (p.y) p.y += r0 * p.out;
    if (p.y_half) p.y_half = static_cast<char*>(p.y_half) + r0 * p.out * 2;
    p.rows -= static_cast<int>(r0);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int o0 = b * kTile, rows = min(p.rows, kSkinnySlabRows);
  const bool w8 = p.w_scale != nullptr, int8 = w8 && p.w_int8;
  const int nwin = p.in / (w8 ? 64 : 32);
  float c[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
  // Two windows in flight a warp: both loaded before either is multiplied.
  int win = warp;
  for (; win + kWarps < nwin; win += 2 * kWarps) {
    Window<NT> f0, f1;
    LoadWindow<NT>(p, w8, o0, g, t, rows, win, f0);
    LoadWindow<NT>(p, w8, o0, g, t, rows, win + kWarps, f1);
    ComputeWindow<NT, kBf16>(f0, w8, int8, c);
    ComputeWindow<NT, kBf16>(f1, w8, int8, c);
  }
  if (win < nwin) {
    Window<NT> f0;
    LoadWindow<NT>(p, w8, o0, g, t, rows, win, f0);
    ComputeWindow<NT, kBf16>(f0, w8, int8, c);
  }
  // C fragment: c[.][0..1] = (output g, columns 2t, 2t+1), c[.][2..3] = (output g + 8, same).
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    red[warp][g][nt * 8 + 2 * t] = c[nt][0];
    red[warp][g][nt * 8 + 2 * t + 1] = c[nt][1];
    red[warp][g + 8][nt * 8 + 2 * t] = c[nt][2];
    red[warp][g + 8][nt * 8 + 2 * t + 1] = c[nt][3];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTile * NT * 8; idx += kThreads) {
    const int ol = idx / (NT * 8), r = idx % (NT * 8), o = o0 + ol;
    if (r >= rows || o >= p.out) continue;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += red[w][ol][r];  // fixed order
    if (w8) v *= p.w_scale[o];                            // an 8-bit row's sum, scaled once
    const size_t at = static_cast<size_t>(r) * p.out + o;
    if (p.y)
      p.y[at] = p.accumulate ? p.y[at] + v : v;
    else
      StoreHalf(p.y_half, at, ApplyAct(p.act, v), kBf16);
  }
}

template <bool kBf16>
cudaError_t LaunchNt(const GemvGroupParams& p, int rows, unsigned blocks, cudaStream_t s) {
  rows = std::min(rows, kSkinnySlabRows);
  if (rows <= 8)
    RWKVX_KLAUNCH((SkinnyKernel<1, kBf16>), blocks, kThreads, 0, s, p);
  else if (rows <= 16)
    RWKVX_KLAUNCH((SkinnyKernel<2, kBf16>), blocks, kThreads, 0, s, p);
  else
    RWKVX_KLAUNCH((SkinnyKernel<4, kBf16>), blocks, kThreads, 0, s, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSkinnyGroup(const GemvGroupParams& p, cudaStream_t s) {
  if (p.n_jobs < 1 || p.n_jobs > kGemvMaxJobs) return cudaErrorInvalidValue;
  const int rows = p.job[0].rows;
  unsigned blocks = 0;
  for (int j = 0; j < p.n_jobs; ++j) {
    const GemvParams& q = p.job[j];
    if (q.rows != rows || q.bf16 != p.job[0].bf16 || !SkinnyShapeFits(q) || (!q.y && !q.y_half))
      return cudaErrorInvalidValue;
    blocks += CeilDiv(q.out, kTile);
  }
  const long long total = static_cast<long long>(blocks) * CeilDiv(rows, kSkinnySlabRows);
  if (total > 0x7fffffffLL) return cudaErrorInvalidValue;
  blocks = static_cast<unsigned>(total);
  return p.job[0].bf16 ? LaunchNt<true>(p, rows, blocks, s) : LaunchNt<false>(p, rows, blocks, s);
}

}  // namespace rwkvx::kernels
