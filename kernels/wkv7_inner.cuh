// The RWKV-7 token loop of one (item, head) as one 256-thread block runs it, written once
// for kernels/wkv7.cu (the sequential kernel) and kernels/wkv7_chunked.cu (its pass A).
// Device code only: no params struct, no launcher. Per token (see wkv7.cuh):
//   sa_i = sum_j S_ij * (-kk_j);  S_ij <- S_ij*w_j + sa_i*kk_j*a_j + v_i*k_j;  y_i = sum_j S_ij*r_j
// Thread t owns columns [(t%4)*16, +16) of state row i = t/4 (or of 4 rows: Wkv7TokensR) in
// registers; row sums are finished with two shuffles among the row's 4 threads. The inputs of kTC tokens are staged
// into shared memory by all threads at once (one memory latency per kTC tokens), then the
// kTC recurrence steps run with no barrier. Shared-memory instruction issue is the limit,
// so every read is a conflict-free float4.
//
// Ownership: the caller's block owns the shared staging arrays and the register state `s`;
// every thread of the block must call Wkv7Tokens with the same row0/len (it holds barriers).
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

// Runs tokens [0, len) of head h, whose inputs are at step rows row0.. of p's [rows, C]
// arrays, from the state in `s`, which it leaves updated. R rows per thread: the block has
// kThreads / R threads; thread t owns columns [(t%4)*16, +16) of rows t/4 + r*(kN/R),
// r < R, in s[r]. Every row's sums run in the same order whatever R is (4 accumulators over
// the thread's 16 columns, then the 4 parts by two shuffles), so the outputs and the state
// are the same bits for R = 1 and R = 4; R = 4 reads each staged vector once for 4 rows
// (a quarter of the shared-memory wavefronts, which bound R = 1 on long items). v is read
// as 0 when zero_v (the chunked kernel's run from I). Each token's readout y_i goes to
// emit(token, i, y) from the row's part-0 thread only.
template <int R, class Emit>
__device__ __forceinline__ void Wkv7TokensR(float (&s)[R][kJ], StageRwk& sh, StageV& sv, const Wkv7Params& p,
                                            int row0, int len, int h, bool zero_v, Emit emit) {
  constexpr int kT = kThreads / R;  // threads of the block
  constexpr int kG = kN / R;        // row groups: row i of group g, r-th row = g + r * kG
  const int t = threadIdx.x, g = t / kP, part = t % kP;
  for (int c0 = 0; c0 < len; c0 += kTC) {
    const int n = min(kTC, len - c0);
    __syncthreads();  // the previous pass is done reading sh
#pragma unroll
    for (int q = 0; q < kTC * kN / kT; ++q) {
      const int e = t + q * kT;
      const int tok = e / kN, c = e % kN;
      if (tok < n) {
        const size_t o = static_cast<size_t>(row0 + c0 + tok) * p.C + h * kN + c;
        const float kk = p.kk[o];
        float* d = &sh[tok][0][c / kJ][c % kJ];
        d[0 * kP * kSEG] = p.r[o];
        d[1 * kP * kSEG] = p.w[o];
        d[2 * kP * kSEG] = p.k[o];
        d[3 * kP * kSEG] = -kk;
        d[4 * kP * kSEG] = kk * p.a[o];
        sv[tok][c] = zero_v ? 0.f : p.v[o];
      }
    }
    __syncthreads();
    // R = 1: unrolled by two so that one token's output reduction overlaps the next
    // token's update; R = 4 has four rows' work per token to overlap (and no registers
    // to spare for two tokens).
    constexpr int kUnroll = R == 1 ? 2 : 1;
#pragma unroll kUnroll
    for (int tok = 0; tok < n; ++tok) {
      const float4* r4 = reinterpret_cast<const float4*>(sh[tok][0][part]);
      const float4* w4 = reinterpret_cast<const float4*>(sh[tok][1][part]);
      const float4* k4 = reinterpret_cast<const float4*>(sh[tok][2][part]);
      const float4* n4 = reinterpret_cast<const float4*>(sh[tok][3][part]);
      const float4* b4 = reinterpret_cast<const float4*>(sh[tok][4][part]);
      // Four accumulators per row: the sum is on the token-to-token critical path.
      float sa0[R], sa1[R], sa2[R], sa3[R];
#pragma unroll
      for (int r = 0; r < R; ++r) sa0[r] = sa1[r] = sa2[r] = sa3[r] = 0.f;
#pragma unroll
      for (int q = 0; q < kJ / 4; ++q) {
        const float4 nk = n4[q];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          sa0[r] += s[r][4 * q] * nk.x;
          sa1[r] += s[r][4 * q + 1] * nk.y;
          sa2[r] += s[r][4 * q + 2] * nk.z;
          sa3[r] += s[r][4 * q + 3] * nk.w;
        }
      }
      float sa[R], vi[R], y0[R], y1[R], y2[R], y3[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        sa[r] = (sa0[r] + sa1[r]) + (sa2[r] + sa3[r]);
        sa[r] += __shfl_xor_sync(0xffffffffu, sa[r], 1);
        sa[r] += __shfl_xor_sync(0xffffffffu, sa[r], 2);
        vi[r] = sv[tok][g + r * kG];
        y0[r] = y1[r] = y2[r] = y3[r] = 0.f;
      }
#pragma unroll
      for (int q = 0; q < kJ / 4; ++q) {
        const float4 w = w4[q], b = b4[q], k = k4[q], rr = r4[q];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float* sr = s[r];
          sr[4 * q] = sr[4 * q] * w.x + sa[r] * b.x + vi[r] * k.x;
          sr[4 * q + 1] = sr[4 * q + 1] * w.y + sa[r] * b.y + vi[r] * k.y;
          sr[4 * q + 2] = sr[4 * q + 2] * w.z + sa[r] * b.z + vi[r] * k.z;
          sr[4 * q + 3] = sr[4 * q + 3] * w.w + sa[r] * b.w + vi[r] * k.w;
          y0[r] += sr[4 * q] * rr.x;
          y1[r] += sr[4 * q + 1] * rr.y;
          y2[r] += sr[4 * q + 2] * rr.z;
          y3[r] += sr[4 * q + 3] * rr.w;
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float y = (y0[r] + y1[r]) + (y2[r] + y3[r]);
        y += __shfl_xor_sync(0xffffffffu, y, 1);
        y += __shfl_xor_sync(0xffffffffu, y, 2);
        if (part == 0) emit(c0 + tok, g + r * kG, y);
      }
    }
  }
}

// One row per thread (256 threads): the form the chunked kernel's pass A runs.
template <class Emit>
__device__ __forceinline__ void Wkv7Tokens(float (&s)[kJ], StageRwk& sh, StageV& sv, const Wkv7Params& p, int row0,
                                           int len, int h, bool zero_v, Emit emit) {
  Wkv7TokensR<1>(reinterpret_cast<float(&)[1][kJ]>(s), sh, sv, p, row0, len, h, zero_v,
                 [&](int tok, int, float y) { emit(tok, y); });
}

}  // namespace rwkvx::kernels::wkv7
