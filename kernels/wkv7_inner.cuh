// The RWKV-7 token loop of one (item, head) as one block runs it, written once
// for kernels/wkv7.cu (the sequential kernel) and kernels/wkv7_chunked.cu (its pass A).
// Device code only: no params struct, no launcher. Per token (see wkv7.cuh):
//   sa_i = sum_j S_ij * (-kk_j);  S_ij <- S_ij*w_j + sa_i*kk_j*a_j + v_i*k_j;  y_i = sum_j S_ij*r_j
// Thread t owns columns [(t%4)*16, +16) of state rows t/4 + r*64/R in registers (R rows a
// thread, blocks of 256 / R threads); row sums are finished with two shuffles among the
// row's 4 threads. The inputs of kTC tokens are staged
// into shared memory by all threads at once (one memory latency per kTC tokens), then the
// kTC recurrence steps run with no barrier. Shared-memory instruction issue is the limit,
// so every read is a conflict-free float4.
//
// Ownership: the caller's block owns the shared staging arrays and the register state `s`;
// every thread of the block must call Wkv7TokensRows with the same row0/len (it holds barriers).
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/wkv7.cuh"

namespace rwkvx::kernels::wkv7 {

constexpr int kN = 64;         // head size: S is [kN, kN]
constexpr int kP = 4;          // threads per state row
constexpr int kJ = kN / kP;    // columns per thread
constexpr int kTC = 16;        // tokens staged per pass
constexpr int kSEG = kJ + 4;   // padded 16-column segment: the 4 parts' float4 reads hit distinct banks
constexpr int kThreads = kN * kP;

// Shared staging of kTC tokens: [token][vector: r, w, k, -kk, kk*a][part][kSEG], and v.
using StageRwk = float[kTC][5][kP][kSEG];
using StageV = float[kTC][kN];

// S_ij*w_j + sa_i*(kk_j*a_j) + v_i*k_j with the roundings spelled out: left to the compiler,
// the contraction into FMAs differed between instantiations (R = 1 and R = 2 gave other
// bits on the H100, session 19), and every path must give the same bits.
__device__ __forceinline__ float Update(float s, float w, float sa, float b, float v, float k) {
  return __fmaf_rn(s, w, __fmaf_rn(sa, b, __fmul_rn(v, k)));
}

// One token's recurrence step from its staged inputs (tk: r, w, k, -kk, kk*a; v) on this
// thread's 16 state columns of R rows (row g + r * kN / R in s[r]); y[r] gets y_i of each
// (the same in the row's 4 threads). The staged values are read once for all R rows: R = 2
// halves the shared-memory reads a row-token, which bound the multi-token loop (ncu:
// L1/TEX ~85% busy). Each row's arithmetic is the R = 1 step's, in the same order.
template <int R>
__device__ __forceinline__ void Wkv7StepRows(float (&s)[R][kJ], const float (&tk)[5][kP][kSEG], const float* v,
                                             int g, int part, float (&y)[R]) {
  const float4* r4 = reinterpret_cast<const float4*>(tk[0][part]);
  const float4* w4 = reinterpret_cast<const float4*>(tk[1][part]);
  const float4* k4 = reinterpret_cast<const float4*>(tk[2][part]);
  const float4* n4 = reinterpret_cast<const float4*>(tk[3][part]);
  const float4* b4 = reinterpret_cast<const float4*>(tk[4][part]);
  // Four accumulators a row: the sum is on the token-to-token critical path.
  float sa0[R], sa1[R], sa2[R], sa3[R];
#pragma unroll
  for (int r = 0; r < R; ++r) sa0[r] = sa1[r] = sa2[r] = sa3[r] = 0.f;
#pragma unroll
  for (int q = 0; q < kJ / 4; ++q) {
    const float4 nk = n4[q];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      sa0[r] = __fmaf_rn(s[r][4 * q], nk.x, sa0[r]);
      sa1[r] = __fmaf_rn(s[r][4 * q + 1], nk.y, sa1[r]);
      sa2[r] = __fmaf_rn(s[r][4 * q + 2], nk.z, sa2[r]);
      sa3[r] = __fmaf_rn(s[r][4 * q + 3], nk.w, sa3[r]);
    }
  }
  float sa[R], vi[R], y0[R], y1[R], y2[R], y3[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    sa[r] = (sa0[r] + sa1[r]) + (sa2[r] + sa3[r]);
    sa[r] += __shfl_xor_sync(0xffffffffu, sa[r], 1);
    sa[r] += __shfl_xor_sync(0xffffffffu, sa[r], 2);
    vi[r] = v[g + r * (kN / R)];
    y0[r] = y1[r] = y2[r] = y3[r] = 0.f;
  }
#pragma unroll
  for (int q = 0; q < kJ / 4; ++q) {
    const float4 w = w4[q], b = b4[q], k = k4[q], rr = r4[q];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float* sr = s[r];
      sr[4 * q] = Update(sr[4 * q], w.x, sa[r], b.x, vi[r], k.x);
      sr[4 * q + 1] = Update(sr[4 * q + 1], w.y, sa[r], b.y, vi[r], k.y);
      sr[4 * q + 2] = Update(sr[4 * q + 2], w.z, sa[r], b.z, vi[r], k.z);
      sr[4 * q + 3] = Update(sr[4 * q + 3], w.w, sa[r], b.w, vi[r], k.w);
      y0[r] = __fmaf_rn(sr[4 * q], rr.x, y0[r]);
      y1[r] = __fmaf_rn(sr[4 * q + 1], rr.y, y1[r]);
      y2[r] = __fmaf_rn(sr[4 * q + 2], rr.z, y2[r]);
      y3[r] = __fmaf_rn(sr[4 * q + 3], rr.w, y3[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float yy = (y0[r] + y1[r]) + (y2[r] + y3[r]);
    yy += __shfl_xor_sync(0xffffffffu, yy, 1);
    yy += __shfl_xor_sync(0xffffffffu, yy, 2);
    y[r] = yy;
  }
}

// The step of one row a thread (row i in s): Wkv7StepRows<1>.
__device__ __forceinline__ float Wkv7Step(float (&s)[kJ], const float (&tk)[5][kP][kSEG], const float* v, int i,
                                          int part) {
  float y[1];
  Wkv7StepRows<1>(reinterpret_cast<float (&)[1][kJ]>(s), tk, v, i, part, y);
  return y[0];
}

// Where column c of staged vector `vec` goes (the layout Wkv7Step reads).
__device__ __forceinline__ float& Staged(float (&tk)[5][kP][kSEG], int vec, int c) { return tk[vec][c / kJ][c % kJ]; }

// Runs tokens [0, len) of head h, whose inputs are at step rows row0.. of p's [rows, C]
// arrays, from the state in `s` (this thread's 16 columns of rows g + r * kN / R, g =
// threadIdx.x / kP: the block has kThreads / R threads), which it leaves updated. v is read
// as 0 when zero_v (the chunked kernel's run from I). Each token's readout y_i goes to
// emit(token, i, y) from the row's part-0 thread only.
template <int R, class Emit>
__device__ __forceinline__ void Wkv7TokensRows(float (&s)[R][kJ], StageRwk& sh, StageV& sv, const Wkv7Params& p,
                                               int row0, int len, int h, bool zero_v, Emit emit) {
  constexpr int kBlock = kThreads / R;
  const int t = threadIdx.x, g = t / kP, part = t % kP;
  for (int c0 = 0; c0 < len; c0 += kTC) {
    const int n = min(kTC, len - c0);
    __syncthreads();  // the previous pass is done reading sh
#pragma unroll
    for (int q = 0; q < kTC * kN / kBlock; ++q) {
      const int e = t + q * kBlock;
      const int tok = e / kN, c = e % kN;
      if (tok < n) {
        const size_t o = static_cast<size_t>(row0 + c0 + tok) * p.C + h * kN + c;
        const float kk = p.kk[o];
        Staged(sh[tok], 0, c) = p.r[o];
        Staged(sh[tok], 1, c) = p.w[o];
        Staged(sh[tok], 2, c) = p.k[o];
        Staged(sh[tok], 3, c) = -kk;
        Staged(sh[tok], 4, c) = kk * p.a[o];
        sv[tok][c] = zero_v ? 0.f : p.v[o];
      }
    }
    __syncthreads();
    // Unrolled so that one token's output reduction overlaps the next token's update.
#pragma unroll 2
    for (int tok = 0; tok < n; ++tok) {
      float y[R];
      Wkv7StepRows<R>(s, sh[tok], sv[tok], g, part, y);
      if (part == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) emit(c0 + tok, g + r * (kN / R), y[r]);
      }
    }
  }
}

}  // namespace rwkvx::kernels::wkv7
