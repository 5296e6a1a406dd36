#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = 64;
constexpr int P = 4;        // threads per state row
constexpr int J = N / P;    // columns per thread

constexpr int TC = 16;      // tokens staged per pass

// grid (H, items), 256 threads: thread t owns columns [(t%4)*16, +16) of row t/4 of the
// head's state in registers; row sums are finished with two shuffles among the 4 threads.
// Inputs of TC tokens are staged into shared memory by all threads at once (one memory
// latency per TC tokens), then the TC recurrence steps run with no barrier at all.
__global__ void __launch_bounds__(N * P) Wkv7Kernel(Wkv7Params p) {
  __shared__ float sh[TC][6][N];  // r, w, k, -kk, kk*a, v
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
    for (int e = t; e < n * N; e += N * P) {
      const int tok = e / N, c = e % N;
      const size_t o = static_cast<size_t>(row0 + c0 + tok) * p.C + h * N + c;
      const float kk = p.kk[o];
      sh[tok][0][c] = p.r[o];
      sh[tok][1][c] = p.w[o];
      sh[tok][2][c] = p.k[o];
      sh[tok][3][c] = -kk;
      sh[tok][4][c] = kk * p.a[o];
      sh[tok][5][c] = p.v[o];
    }
    __syncthreads();
    for (int tok = 0; tok < n; ++tok) {
      const float(*b)[N] = sh[tok];
      float sa0 = 0.f, sa1 = 0.f;
#pragma unroll
      for (int jj = 0; jj < J; jj += 2) {
        sa0 += s[jj] * b[3][j0 + jj];
        sa1 += s[jj + 1] * b[3][j0 + jj + 1];
      }
      float sa = sa0 + sa1;
      sa += __shfl_xor_sync(0xffffffffu, sa, 1);
      sa += __shfl_xor_sync(0xffffffffu, sa, 2);
      const float vi = b[5][i];
      float y0 = 0.f, y1 = 0.f;
#pragma unroll
      for (int jj = 0; jj < J; jj += 2) {
        s[jj] = s[jj] * b[1][j0 + jj] + sa * b[4][j0 + jj] + vi * b[2][j0 + jj];
        s[jj + 1] = s[jj + 1] * b[1][j0 + jj + 1] + sa * b[4][j0 + jj + 1] + vi * b[2][j0 + jj + 1];
        y0 += s[jj] * b[0][j0 + jj];
        y1 += s[jj + 1] * b[0][j0 + jj + 1];
      }
      float y = y0 + y1;
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
