#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/attn_prefill.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/mma.cuh"

namespace rwkvx::kernels {
namespace {
// Tensor-core form (flash-attention style): a block holds 64 queries of one (item, head),
// four warps of 16; each 64-key tile of K and V is staged in shared memory (cp.async, rows
// past the block's last key zero-filled), S = Q K^T and O += P V run as mma.sync m16n8k16
// (fp16 inputs: q scaled by 1/8 and rounded to fp16, P rounded to fp16; fp32 accumulation),
// with the online softmax on the S fragments in registers. Each query's result depends on
// its own key range and the tile grid only (the prefix path's tiles start at row 0), not on
// the other queries of the block: a decode token through this kernel (`singles`, the
// batch-invariant mode) gives the bits of a prefill row over the same keys.
constexpr int kQ = 64, kK = 64, kD = 64;
constexpr int kStride = kD + 8;  // halves a staged row: 144 bytes, conflict-free fragment reads
constexpr int kThreads = 128;

__device__ __forceinline__ int LoRow(const AttnItem& it, int i, int chunk) {
  return it.prefix ? 0 : it.ct + (i / chunk) * chunk;
}

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ uint32_t PackHalf2(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Four 8x8 half matrices, transposed, from rows given per lane (ldmatrix .trans): lane
// (g, t) gets elements (rows 2t, 2t+1; column g) of each.
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* row_addr) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// grid (ceil(max_len / 64), items, H), 128 threads.
__global__ void __launch_bounds__(kThreads) AttnPrefillKernel(AttnPrefillParams p) {
  __shared__ __align__(16) __half Ks[kK][kStride];
  __shared__ __align__(16) __half Vs[kK][kStride];
  const AttnItem& it = p.items[blockIdx.y];
  const int h = blockIdx.z;
  const int q0 = blockIdx.x * kQ;
  if (q0 >= it.len || (it.len == 1 && (!p.singles || it.sparse))) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int qn = min(kQ, it.len - q0);
  // This warp's queries: i0 + g and i0 + g + 8 (block-relative rows warp*16 + ...).
  const int i0 = q0 + warp * 16;
  const int ia = i0 + g, ib = i0 + g + 8;  // item-relative query indices
  const bool va = ia < it.len, vb = ib < it.len;

  // Q fragments (A operand, 16 queries x 64 dims: four k16 steps), scaled by 1/8, fp16.
  uint32_t qf[4][4];
  {
    const float* qa = p.q + static_cast<size_t>(it.row0 + (va ? ia : 0)) * p.C + h * kD;
    const float* qb = p.q + static_cast<size_t>(it.row0 + (vb ? ib : 0)) * p.C + h * kD;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int d0 = 16 * s + 2 * t, d1 = d0 + 8;
      const float2 a0 = va ? *reinterpret_cast<const float2*>(qa + d0) : make_float2(0.f, 0.f);
      const float2 b0 = vb ? *reinterpret_cast<const float2*>(qb + d0) : make_float2(0.f, 0.f);
      const float2 a1 = va ? *reinterpret_cast<const float2*>(qa + d1) : make_float2(0.f, 0.f);
      const float2 b1 = vb ? *reinterpret_cast<const float2*>(qb + d1) : make_float2(0.f, 0.f);
      qf[s][0] = PackHalf2(a0.x * 0.125f, a0.y * 0.125f);
      qf[s][1] = PackHalf2(b0.x * 0.125f, b0.y * 0.125f);
      qf[s][2] = PackHalf2(a1.x * 0.125f, a1.y * 0.125f);
      qf[s][3] = PackHalf2(b1.x * 0.125f, b1.y * 0.125f);
    }
  }
  // Key ranges of the two rows.
  const int hia = it.ct + ia, hib = it.ct + ib;
  const int loa = LoRow(it, ia, p.chunk), lob = LoRow(it, ib, p.chunk);
  const int lo = LoRow(it, q0, p.chunk);
  const int hi = it.ct + q0 + qn - 1;  // the block's last key (inclusive)

  float o[8][4];
#pragma unroll
  for (int n = 0; n < 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float ma = -INFINITY, mb = -INFINITY, la = 0.f, lb = 0.f;  // this thread's parts of l

  for (int t0 = lo; t0 <= hi; t0 += kK) {
    __syncthreads();  // the previous tile's reads are done
    for (int e = threadIdx.x; e < kK * 8; e += kThreads) {
      const int rr = e >> 3, q = e & 7, row = t0 + rr;
      const bool ok = row <= hi;
      const __half* kr = it.kv.K(ok ? row : t0, p.C) + h * kD + 8 * q;
      CpAsync16(&Ks[rr][8 * q], kr, ok);
      CpAsync16(&Vs[rr][8 * q], kr + it.kv.v_off, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 0;\n" ::);
    __syncthreads();

    // S = Q K^T: 16 queries x 64 keys (8 n-tiles of 8 keys).
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
      const __half* kr = &Ks[n * 8 + g][0];
#pragma unroll
      for (int st = 0; st < 4; ++st) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr + 16 * st + 2 * t);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kr + 16 * st + 8 + 2 * t);
        Mma16816<false>(s[n], qf[st][0], qf[st][1], qf[st][2], qf[st][3], b0, b1);
      }
    }
    // Mask and the tile's row maxima (rows g: s[.][0..1], g + 8: s[.][2..3]).
    float tma = -INFINITY, tmb = -INFINITY;
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kr = t0 + n * 8 + 2 * t + e;
        if (!(va && kr >= loa && kr <= hia)) s[n][e] = -INFINITY;
        if (!(vb && kr >= lob && kr <= hib)) s[n][2 + e] = -INFINITY;
        tma = fmaxf(tma, s[n][e]);
        tmb = fmaxf(tmb, s[n][2 + e]);
      }
    tma = fmaxf(tma, __shfl_xor_sync(0xffffffffu, tma, 1));
    tma = fmaxf(tma, __shfl_xor_sync(0xffffffffu, tma, 2));
    tmb = fmaxf(tmb, __shfl_xor_sync(0xffffffffu, tmb, 1));
    tmb = fmaxf(tmb, __shfl_xor_sync(0xffffffffu, tmb, 2));
    const float na = fmaxf(ma, tma), nb = fmaxf(mb, tmb);
    // exp relative to the running maxima (a row with nothing yet keeps zeros).
    const float ca = na == -INFINITY ? 1.f : expf(ma - na), cb = nb == -INFINITY ? 1.f : expf(mb - nb);
    float suma = 0.f, sumb = 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        s[n][e] = na == -INFINITY ? 0.f : expf(s[n][e] - na);
        s[n][2 + e] = nb == -INFINITY ? 0.f : expf(s[n][2 + e] - nb);
        suma += s[n][e];
        sumb += s[n][2 + e];
      }
    la = la * ca + suma;
    lb = lb * cb + sumb;
    ma = na;
    mb = nb;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      o[n][0] *= ca;
      o[n][1] *= ca;
      o[n][2] *= cb;
      o[n][3] *= cb;
    }
    // O += P V: P (16 x 64 keys) from the S fragments as the A operand (four k16 steps),
    // V^T fragments through ldmatrix .trans (two 8-dim n-tiles a load).
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      const uint32_t a0 = PackHalf2(s[2 * st][0], s[2 * st][1]);
      const uint32_t a1 = PackHalf2(s[2 * st][2], s[2 * st][3]);
      const uint32_t a2 = PackHalf2(s[2 * st + 1][0], s[2 * st + 1][1]);
      const uint32_t a3 = PackHalf2(s[2 * st + 1][2], s[2 * st + 1][3]);
#pragma unroll
      for (int np = 0; np < 4; ++np) {  // dims 16 np .. 16 np + 15: n-tiles 2 np, 2 np + 1
        // Matrices: keys 16st+0..7 x dims 16np+0..7, keys 16st+8..15 x the same dims, then
        // the same keys x dims 16np+8..15; lane l addresses row l % 8 of matrix l / 8.
        const int m = lane >> 3, r = lane & 7;
        const __half* addr = &Vs[16 * st + (m & 1) * 8 + r][16 * np + (m >> 1) * 8];
        uint32_t v[4];
        LdMatrixX4Trans(v, addr);
        Mma16816<false>(o[2 * np], a0, a1, a2, a3, v[0], v[1]);
        Mma16816<false>(o[2 * np + 1], a0, a1, a2, a3, v[2], v[3]);
      }
    }
  }
  // l: the quad's parts (fixed order), then O / l.
  la += __shfl_xor_sync(0xffffffffu, la, 1);
  la += __shfl_xor_sync(0xffffffffu, la, 2);
  lb += __shfl_xor_sync(0xffffffffu, lb, 1);
  lb += __shfl_xor_sync(0xffffffffu, lb, 2);
#pragma unroll
  for (int n = 0; n < 8; ++n) {
    const int d = n * 8 + 2 * t;
    if (va) {
      const size_t oa = static_cast<size_t>(it.row0 + ia) * p.C + h * kD + d;
      StoreHalf(p.out, oa, o[n][0] / la, p.bf16);
      StoreHalf(p.out, oa + 1, o[n][1] / la, p.bf16);
    }
    if (vb) {
      const size_t ob = static_cast<size_t>(it.row0 + ib) * p.C + h * kD + d;
      StoreHalf(p.out, ob, o[n][2] / lb, p.bf16);
      StoreHalf(p.out, ob + 1, o[n][3] / lb, p.bf16);
    }
  }
}
}  // namespace

cudaError_t LaunchAttnPrefill(const AttnPrefillParams& p, cudaStream_t s) {
  if (p.n_items == 0 || p.max_len < 1 || (p.max_len == 1 && !p.singles)) return cudaSuccess;
  AttnPrefillKernel<<<dim3(CeilDiv(p.max_len, kQ), p.n_items, p.H), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
