#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = 64;
constexpr int P = 4;        // threads per state row
constexpr int J = N / P;    // columns per thread

// grid (H, items), 256 threads: thread t owns columns [(t%4)*16, +16) of row t/4 of the
// head's state in registers; row sums are finished with two shuffles among the 4 threads.
// The next token's inputs are loaded while the current one is computed, and the shared
// vectors are double-buffered, so each token costs one barrier.
__global__ void __launch_bounds__(N * P) Wkv7Kernel(Wkv7Params p) {
  __shared__ float sh[2][6][N];  // r, w, k, -kk, kk*a, v
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int i = t / P, part = t % P, j0 = part * J;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[J];
#pragma unroll
  for (int jj = 0; jj < J; ++jj) s[jj] = S[(j0 + jj) * N + i];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  float nr = 0.f, nw = 0.f, nk = 0.f, nkk = 0.f, na = 0.f, nv = 0.f;
  auto load = [&](int tok) {
    const size_t o = static_cast<size_t>(row0 + tok) * p.C + h * N + t;
    nr = p.r[o]; nw = p.w[o]; nk = p.k[o]; nkk = p.kk[o]; na = p.a[o]; nv = p.v[o];
  };
  if (t < N && len > 0) load(0);
  for (int tok = 0; tok < len; ++tok) {
    float(*b)[N] = sh[tok & 1];
    if (t < N) {
      b[0][t] = nr; b[1][t] = nw; b[2][t] = nk; b[3][t] = -nkk; b[4][t] = nkk * na; b[5][t] = nv;
    }
    __syncthreads();
    if (t < N && tok + 1 < len) load(tok + 1);
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
    if (part == 0) p.y[static_cast<size_t>(row0 + tok) * p.C + h * N + i] = y;
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
