// The RWKV-7 token loop of one (item, head) as one 256-thread block runs it, written once
// for kernels/wkv7.cu (the sequential kernel) and kernels/wkv7_chunked.cu (its pass A).
// Device code only: no params struct, no launcher. Per token (see wkv7.cuh):
//   sa_i = sum_j S_ij * (-kk_j);  S_ij <- S_ij*w_j + sa_i*kk_j*a_j + v_i*k_j;  y_i = sum_j S_ij*r_j
// Thread t owns columns [(t%4)*16, +16) of state row i = t/4 in registers; row sums are
// finished with two shuffles among the row's 4 threads. The inputs of kTC tokens are staged
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

// One token's recurrence step from its staged inputs (tk: r, w, k, -kk, kk*a; v) on this
// thread's 16 state columns; returns y_i (the same in the row's 4 threads).
__device__ __forceinline__ float Wkv7Step(float (&s)[kJ], const float (&tk)[5][kP][kSEG], const float* v, int i,
                                          int part) {
  const float4* r4 = reinterpret_cast<const float4*>(tk[0][part]);
  const float4* w4 = reinterpret_cast<const float4*>(tk[1][part]);
  const float4* k4 = reinterpret_cast<const float4*>(tk[2][part]);
  const float4* n4 = reinterpret_cast<const float4*>(tk[3][part]);
  const float4* b4 = reinterpret_cast<const float4*>(tk[4][part]);
  // Four accumulators: the sum is on the token-to-token critical path.
  float sa0 = 0.f, sa1 = 0.f, sa2 = 0.f, sa3 = 0.f;
#pragma unroll
  for (int q = 0; q < kJ / 4; ++q) {
    const float4 nk = n4[q];
    sa0 += s[4 * q] * nk.x;
    sa1 += s[4 * q + 1] * nk.y;
    sa2 += s[4 * q + 2] * nk.z;
    sa3 += s[4 * q + 3] * nk.w;
  }
  float sa = (sa0 + sa1) + (sa2 + sa3);
  sa += __shfl_xor_sync(0xffffffffu, sa, 1);
  sa += __shfl_xor_sync(0xffffffffu, sa, 2);
  const float vi = v[i];
  float y0 = 0.f, y1 = 0.f, y2 = 0.f, y3 = 0.f;
#pragma unroll
  for (int q = 0; q < kJ / 4; ++q) {
    const float4 w = w4[q], b = b4[q], k = k4[q], r = r4[q];
    s[4 * q] = s[4 * q] * w.x + sa * b.x + vi * k.x;
    s[4 * q + 1] = s[4 * q + 1] * w.y + sa * b.y + vi * k.y;
    s[4 * q + 2] = s[4 * q + 2] * w.z + sa * b.z + vi * k.z;
    s[4 * q + 3] = s[4 * q + 3] * w.w + sa * b.w + vi * k.w;
    y0 += s[4 * q] * r.x;
    y1 += s[4 * q + 1] * r.y;
    y2 += s[4 * q + 2] * r.z;
    y3 += s[4 * q + 3] * r.w;
  }
  float y = (y0 + y1) + (y2 + y3);
  y += __shfl_xor_sync(0xffffffffu, y, 1);
  y += __shfl_xor_sync(0xffffffffu, y, 2);
  return y;
}

// Where column c of staged vector `vec` goes (the layout Wkv7Step reads).
__device__ __forceinline__ float& Staged(float (&tk)[5][kP][kSEG], int vec, int c) { return tk[vec][c / kJ][c % kJ]; }

// Runs tokens [0, len) of head h, whose inputs are at step rows row0.. of p's [rows, C]
// arrays, from the state in `s` (this thread's 16 columns of row threadIdx.x / kP), which it
// leaves updated. v is read as 0 when zero_v (the chunked kernel's run from I). Each
// token's readout y_i goes to emit(token, y) from the row's part-0 thread only.
template <class Emit>
__device__ __forceinline__ void Wkv7Tokens(float (&s)[kJ], StageRwk& sh, StageV& sv, const Wkv7Params& p, int row0,
                                           int len, int h, bool zero_v, Emit emit) {
  const int t = threadIdx.x, i = t / kP, part = t % kP;
  for (int c0 = 0; c0 < len; c0 += kTC) {
    const int n = min(kTC, len - c0);
    __syncthreads();  // the previous pass is done reading sh
#pragma unroll
    for (int q = 0; q < kTC * kN / kThreads; ++q) {
      const int e = t + q * kThreads;
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
      const float y = Wkv7Step(s, sh[tok], sv[tok], i, part);
      if (part == 0) emit(c0 + tok, y);
    }
  }
}

}  // namespace rwkvx::kernels::wkv7
