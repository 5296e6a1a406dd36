#include "kernels/attn_prefill.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int QT = 32, KT = 64, QPW = 8;  // queries per block, keys per tile, queries per warp

__device__ __forceinline__ int LoRow(const AttnItem& it, int i, int chunk) {
  return it.prefix ? 0 : it.ct + (i / chunk) * chunk;
}

// grid (ceil(max_len/32), items, H), 128 threads (4 warps x 8 queries). Each K/V tile loaded
// into shared memory serves 32 queries; V stays half precision there (41 KB in all).
__global__ void __launch_bounds__(128) AttnPrefillKernel(AttnPrefillParams p) {
  // Rows of Ks padded to 68 floats: a quarter-warp's float4 reads of 8 rows hit all banks once.
  __shared__ __align__(16) float Qs[QT][64];
  __shared__ __align__(16) float Ks[KT][68];
  __shared__ __align__(16) __half2 Vs[KT][32];
  __shared__ __align__(16) float Ps[4][QPW][KT];
  const AttnItem& it = p.items[blockIdx.y];
  const int h = blockIdx.z;
  const int q0 = blockIdx.x * QT;
  if (q0 >= it.len || (it.len == 1 && (!p.singles || it.sparse))) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int qn = min(QT, it.len - q0);
  for (int idx = threadIdx.x; idx < QT * 64; idx += blockDim.x) {
    const int qi = idx / 64, d = idx % 64;
    Qs[qi][d] = qi < qn ? p.q[static_cast<size_t>(it.row0 + q0 + qi) * p.C + h * 64 + d] * 0.125f : 0.f;
  }
  const int lo = LoRow(it, q0, p.chunk);
  const int hi = it.ct + q0 + qn - 1;  // inclusive
  float m[QPW], l[QPW], ax[QPW], ay[QPW];
#pragma unroll
  for (int q = 0; q < QPW; ++q) { m[q] = -INFINITY; l[q] = 0.f; ax[q] = 0.f; ay[q] = 0.f; }

  for (int t0 = lo; t0 <= hi; t0 += KT) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < KT * 32; idx += blockDim.x) {
      const int rr = idx / 32, d2 = idx % 32, row = t0 + rr;
      float2 kf = make_float2(0.f, 0.f);
      __half2 vh = __float2half2_rn(0.f);
      if (row <= hi) {
        const __half* kr = it.kv.K(row, p.C) + h * 64 + 2 * d2;
        kf = __half22float2(*reinterpret_cast<const __half2*>(kr));
        vh = *reinterpret_cast<const __half2*>(kr + it.kv.v_off);
      }
      Ks[rr][2 * d2] = kf.x;
      Ks[rr][2 * d2 + 1] = kf.y;
      Vs[rr][d2] = vh;
    }
    __syncthreads();
    float s0[QPW], s1[QPW];
#pragma unroll
    for (int q = 0; q < QPW; ++q) { s0[q] = 0.f; s1[q] = 0.f; }
#pragma unroll 4
    for (int d4 = 0; d4 < 16; ++d4) {
      const float4 k0 = *reinterpret_cast<const float4*>(&Ks[lane][4 * d4]);
      const float4 k1 = *reinterpret_cast<const float4*>(&Ks[lane + 32][4 * d4]);
#pragma unroll
      for (int q = 0; q < QPW; ++q) {
        const float4 qv = *reinterpret_cast<const float4*>(&Qs[warp * QPW + q][4 * d4]);
        s0[q] += qv.x * k0.x + qv.y * k0.y + qv.z * k0.z + qv.w * k0.w;
        s1[q] += qv.x * k1.x + qv.y * k1.y + qv.z * k1.z + qv.w * k1.w;
      }
    }
#pragma unroll
    for (int q = 0; q < QPW; ++q) {
      const int qi = warp * QPW + q;
      const int i = q0 + qi;
      float p0 = 0.f, p1 = 0.f;
      if (qi < qn) {
        const int lo_i = LoRow(it, i, p.chunk), hi_i = it.ct + i;
        const int r0 = t0 + lane, r1 = t0 + lane + 32;
        const bool v0 = r0 >= lo_i && r0 <= hi_i, v1 = r1 >= lo_i && r1 <= hi_i;
        const float tmax = WarpMax(fmaxf(v0 ? s0[q] : -INFINITY, v1 ? s1[q] : -INFINITY));
        if (tmax != -INFINITY) {
          const float mn = fmaxf(m[q], tmax);
          const float corr = expf(m[q] - mn);
          p0 = v0 ? expf(s0[q] - mn) : 0.f;
          p1 = v1 ? expf(s1[q] - mn) : 0.f;
          l[q] = l[q] * corr + WarpSum(p0 + p1);
          ax[q] *= corr;
          ay[q] *= corr;
          m[q] = mn;
        }
      }
      Ps[warp][q][lane] = p0;
      Ps[warp][q][lane + 32] = p1;
    }
    __syncwarp();
#pragma unroll 2
    for (int r4 = 0; r4 < KT / 4; ++r4) {
      const float2 v0 = __half22float2(Vs[4 * r4][lane]), v1 = __half22float2(Vs[4 * r4 + 1][lane]),
                   v2 = __half22float2(Vs[4 * r4 + 2][lane]), v3 = __half22float2(Vs[4 * r4 + 3][lane]);
#pragma unroll
      for (int q = 0; q < QPW; ++q) {
        const float4 pw = *reinterpret_cast<const float4*>(&Ps[warp][q][4 * r4]);
        ax[q] += pw.x * v0.x + pw.y * v1.x + pw.z * v2.x + pw.w * v3.x;
        ay[q] += pw.x * v0.y + pw.y * v1.y + pw.z * v2.y + pw.w * v3.y;
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int q = 0; q < QPW; ++q) {
    const int qi = warp * QPW + q;
    if (qi >= qn) continue;
    const size_t o = static_cast<size_t>(it.row0 + q0 + qi) * p.C + h * 64 + 2 * lane;
    StoreHalf(p.out, o, ax[q] / l[q], p.bf16);
    StoreHalf(p.out, o + 1, ay[q] / l[q], p.bf16);
  }
}
}  // namespace

cudaError_t LaunchAttnPrefill(const AttnPrefillParams& p, cudaStream_t s) {
  if (p.n_items == 0 || p.max_len < 1 || (p.max_len == 1 && !p.singles)) return cudaSuccess;
  AttnPrefillKernel<<<dim3(CeilDiv(p.max_len, QT), p.n_items, p.H), 128, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
