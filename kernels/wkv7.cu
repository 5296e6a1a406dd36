#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = 64;
constexpr int P = 4;        // threads per state row
constexpr int J = N / P;    // columns per thread

constexpr int TC = 16;      // tokens staged per pass
constexpr int SEG = J + 4;  // padded 16-column segment: the 4 parts' float4 reads hit distinct banks

// grid (H, items), 256 threads: thread t owns columns [(t%4)*16, +16) of row t/4 of the
// head's state in registers; row sums are finished with two shuffles among the 4 threads.
// Inputs of TC tokens are staged into shared memory by all threads at once (one memory
// latency per TC tokens); the TC recurrence steps then run with no barrier. Shared-memory
// instruction issue is the limit, so every read is a conflict-free float4.
__global__ void __launch_bounds__(N * P) Wkv7Kernel(Wkv7Params p) {
  // [token][vector: r, w, k, -kk, kk*a][part][SEG]; v separately.
  __shared__ __align__(16) float sh[TC][5][P][SEG];
  __shared__ float sv[TC][N];
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int i = t / P, part = t % P, j0 = part * J;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[J];
#pragma unroll
  for (int jj = 0; jj < J; ++jj) s[jj] = S[(j0 + jj) * N + i];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  for (int c0 = 0; c0 < len; c0 += TC) {
    const int n = min(TC, len - c0);
    __syncthreads();  // the previous pass is done reading sh
#pragma unroll
    for (int q = 0; q < TC * N / (N * P); ++q) {
      const int e = t + q * N * P;
      const int tok = e / N, c = e % N;
      if (tok < n) {
        const size_t o = static_cast<size_t>(row0 + c0 + tok) * p.C + h * N + c;
        const float kk = p.kk[o];
        float* d = &sh[tok][0][c / J][c % J];
        d[0 * P * SEG] = p.r[o];
        d[1 * P * SEG] = p.w[o];
        d[2 * P * SEG] = p.k[o];
        d[3 * P * SEG] = -kk;
        d[4 * P * SEG] = kk * p.a[o];
        sv[tok][c] = p.v[o];
      }
    }
    __syncthreads();
    // Unrolled so that one token's output reduction overlaps the next token's update.
#pragma unroll 2
    for (int tok = 0; tok < n; ++tok) {
      const float4* r4 = reinterpret_cast<const float4*>(sh[tok][0][part]);
      const float4* w4 = reinterpret_cast<const float4*>(sh[tok][1][part]);
      const float4* k4 = reinterpret_cast<const float4*>(sh[tok][2][part]);
      const float4* n4 = reinterpret_cast<const float4*>(sh[tok][3][part]);
      const float4* b4 = reinterpret_cast<const float4*>(sh[tok][4][part]);
      // Four accumulators: the sum is on the token-to-token critical path.
      float sa0 = 0.f, sa1 = 0.f, sa2 = 0.f, sa3 = 0.f;
#pragma unroll
      for (int q = 0; q < J / 4; ++q) {
        const float4 nk = n4[q];
        sa0 += s[4 * q] * nk.x;
        sa1 += s[4 * q + 1] * nk.y;
        sa2 += s[4 * q + 2] * nk.z;
        sa3 += s[4 * q + 3] * nk.w;
      }
      float sa = (sa0 + sa1) + (sa2 + sa3);
      sa += __shfl_xor_sync(0xffffffffu, sa, 1);
      sa += __shfl_xor_sync(0xffffffffu, sa, 2);
      const float vi = sv[tok][i];
      float y0 = 0.f, y1 = 0.f, y2 = 0.f, y3 = 0.f;
#pragma unroll
      for (int q = 0; q < J / 4; ++q) {
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
      if (part == 0) p.y[static_cast<size_t>(row0 + c0 + tok) * p.C + h * N + i] = y;
    }
  }
#pragma unroll
  for (int jj = 0; jj < J; ++jj) S[(j0 + jj) * N + i] = s[jj];
}
}  // namespace

cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s) {
  if (p.items == 0) return cudaSuccess;
  Wkv7Kernel<<<dim3(p.H, p.items), N * P, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
