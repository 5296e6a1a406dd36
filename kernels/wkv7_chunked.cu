#include "kernels/kernel_util.cuh"
#include "kernels/wkv7_chunked.cuh"
#include "kernels/wkv7_inner.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = wkv7::kN;
constexpr int P = wkv7::kP;  // threads per state row
constexpr int J = wkv7::kJ;  // columns per thread
constexpr int L = kWkv7ChunkLen;
static_assert(L % wkv7::kTC == 0, "chunk length must be a multiple of the staging pass");

struct Scratch {  // views of one (item, chunk, head) slot
  float *P, *D, *Q, *Y0;
};
__device__ __forceinline__ Scratch Slot(float* base, int item, int g, int h, int seg_chunks, int H) {
  float* s = base + ((static_cast<size_t>(item) * seg_chunks + g) * H + h) * kWkv7ChunkFloats;
  return Scratch{s, s + N * N, s + 2 * N * N, s + 2 * N * N + L * N};
}

// Pass A. grid (seg_chunks, H, items * 2), 256 / R threads. z = item * 2 + mode: mode 0
// runs X from I with v = 0 (writes P = X_L and Q_t = X_t r_t), mode 1 runs D from 0 (writes
// D_L and y0_t). The token loop is the sequential kernel's (wkv7::Wkv7TokensRows): thread t
// owns columns [(t%4)*16, +16) of rows t/4 + r*64/R (base.rows_per_thread: the same bits).
template <int R>
__global__ void __launch_bounds__(N * P / R) Wkv7ChunkAKernel(Wkv7ChunkedParams cp, int chunk0) {
  const Wkv7Params& p = cp.base;
  __shared__ __align__(16) wkv7::StageRwk sh;
  __shared__ wkv7::StageV sv;
  const int g = blockIdx.x, h = blockIdx.y, item = blockIdx.z >> 1, mode = blockIdx.z & 1;
  const int len = p.item_len[item];
  const int t0 = (chunk0 + g) * L;
  if (t0 >= len) return;  // uniform over the block
  const int n_tok = min(L, len - t0);
  const int row0 = p.item_row0[item] + t0;
  const int t = threadIdx.x, gi = t / P, part = t % P, j0 = part * J;
  float s[R][J];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int jj = 0; jj < J; ++jj) s[r][jj] = (mode == 0 && j0 + jj == gi + r * (N / R)) ? 1.f : 0.f;
  const Scratch out = Slot(cp.scratch, item, g, h, cp.seg_chunks, p.H);
  float* yout = mode == 0 ? out.Q : out.Y0;
  wkv7::Wkv7TokensRows<R>(s, sh, sv, p, row0, n_tok, h, /*zero_v=*/mode == 0,
                          [&](int tok, int i, float y) { yout[tok * N + i] = y; });
  // Final X (or D), row-major [i][j].
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float* fin = (mode == 0 ? out.P : out.D) + (gi + r * (N / R)) * N + j0;
#pragma unroll
    for (int q = 0; q < J / 4; ++q)
      reinterpret_cast<float4*>(fin)[q] = make_float4(s[r][4 * q], s[r][4 * q + 1], s[r][4 * q + 2], s[r][4 * q + 3]);
  }
}

// Pass B. grid (H, items, RS), 256 threads: the chunk-to-chunk recurrence S <- S P + D only.
// Rows of S are independent, so block z takes rows [z*R, +R) (R = 64/RS): RS blocks per
// (item, head) when pairs are few. Thread t owns S[i][j0..j0+JC) (i = z*R + t/TPR) in
// registers; per chunk the block's rows of S go to shared memory so each thread can read
// its whole row. The chunk-start state S_c is written over D_c in the scratch (those rows
// of D_c are read by this block only, one chunk ahead) for pass C. The next chunk's P and D
// are loaded into registers while this one computes.
template <int RS>
__global__ void __launch_bounds__(N * P) Wkv7ChunkBKernel(Wkv7ChunkedParams cp, int chunk0) {
  constexpr int R = N / RS, TPR = N * P / R, JC = N / TPR;
  static_assert(JC % 4 == 0, "columns per thread must be whole float4s");
  const Wkv7Params& p = cp.base;
  __shared__ float Ss[R][N + 1];
  __shared__ __align__(16) float Ps[N][N];
  const int h = blockIdx.x, item = blockIdx.y;
  const int len = p.item_len[item];
  if (chunk0 * L >= len) return;
  const int t = threadIdx.x, li = t / TPR, i = blockIdx.z * R + li, j0 = (t % TPR) * JC;
  const int n_chunks = min(cp.seg_chunks, (len - chunk0 * L + L - 1) / L);
  float* S = p.item_state[item] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[JC];
#pragma unroll
  for (int jj = 0; jj < JC; ++jj) s[jj] = S[(j0 + jj) * N + i];
  constexpr int PQ = N * N / 4 / (N * P);  // float4 of P per thread
  float4 pf[PQ], df[JC / 4];
  auto load = [&](int g) {
    const Scratch in = Slot(cp.scratch, item, g, h, cp.seg_chunks, p.H);
#pragma unroll
    for (int q = 0; q < PQ; ++q) pf[q] = reinterpret_cast<const float4*>(in.P)[t + q * N * P];
#pragma unroll
    for (int q = 0; q < JC / 4; ++q) df[q] = reinterpret_cast<const float4*>(in.D + i * N + j0)[q];
  };
  load(0);
  for (int g = 0; g < n_chunks; ++g) {
    const Scratch in = Slot(cp.scratch, item, g, h, cp.seg_chunks, p.H);
    __syncthreads();  // the previous chunk is done with Ss, Ps
#pragma unroll
    for (int jj = 0; jj < JC; ++jj) Ss[li][j0 + jj] = s[jj];
#pragma unroll
    for (int q = 0; q < PQ; ++q) reinterpret_cast<float4*>(&Ps[0][0])[t + q * N * P] = pf[q];
    float acc[JC];
#pragma unroll
    for (int q = 0; q < JC / 4; ++q) {
      acc[4 * q] = df[q].x;
      acc[4 * q + 1] = df[q].y;
      acc[4 * q + 2] = df[q].z;
      acc[4 * q + 3] = df[q].w;
    }
    __syncthreads();
    if (g + 1 < n_chunks) load(g + 1);
#pragma unroll 4
    for (int m = 0; m < N; ++m) {
      const float sm = Ss[li][m];
      const float4* p4 = reinterpret_cast<const float4*>(&Ps[m][j0]);
#pragma unroll
      for (int q = 0; q < JC / 4; ++q) {
        const float4 pv = p4[q];
        acc[4 * q] += sm * pv.x;
        acc[4 * q + 1] += sm * pv.y;
        acc[4 * q + 2] += sm * pv.z;
        acc[4 * q + 3] += sm * pv.w;
      }
    }
    // S_c (this block's rows) for pass C goes to the S-scratch of the slot: the D area,
    // which only this block's rows read (df, already loaded). P_c is read by all RS blocks.
    float4* sc = reinterpret_cast<float4*>(in.D + i * N + j0);
#pragma unroll
    for (int q = 0; q < JC / 4; ++q) sc[q] = make_float4(s[4 * q], s[4 * q + 1], s[4 * q + 2], s[4 * q + 3]);
#pragma unroll
    for (int jj = 0; jj < JC; ++jj) s[jj] = acc[jj];
  }
#pragma unroll
  for (int jj = 0; jj < JC; ++jj) S[(j0 + jj) * N + i] = s[jj];
}

// Pass C. grid (seg_chunks, H, items), 256 threads: y_t = S_c Q_t + y0_t for the chunk's
// tokens, independent across chunks. Thread t computes a 4-row x 4-token tile.
__global__ void __launch_bounds__(N * P) Wkv7ChunkCKernel(Wkv7ChunkedParams cp, int chunk0) {
  const Wkv7Params& p = cp.base;
  __shared__ float Ss[N][N + 1];
  __shared__ float Qs[L][N + 1];
  const int g = blockIdx.x, h = blockIdx.y, item = blockIdx.z;
  const int len = p.item_len[item];
  const int t0 = (chunk0 + g) * L;
  if (t0 >= len) return;
  const int n_tok = min(L, len - t0);
  const Scratch in = Slot(cp.scratch, item, g, h, cp.seg_chunks, p.H);
  const int t = threadIdx.x;
  for (int e = t; e < N * N; e += N * P) Ss[e / N][e % N] = in.D[e];  // S_c (pass B)
  for (int e = t; e < n_tok * N; e += N * P) Qs[e / N][e % N] = in.Q[e];
  __syncthreads();
  const int r0 = (t % 16) * 4, u0 = (t / 16) * 4;  // rows r0.., tokens u0..
  if (u0 >= n_tok) return;
  float acc[4][4] = {};
#pragma unroll 4
  for (int m = 0; m < N; ++m) {
    float a[4], b[4];
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      a[x] = Ss[r0 + x][m];
      b[x] = Qs[u0 + x][m];
    }
#pragma unroll
    for (int x = 0; x < 4; ++x)
#pragma unroll
      for (int u = 0; u < 4; ++u) acc[x][u] += a[x] * b[u];
  }
  const size_t row0 = static_cast<size_t>(p.item_row0[item]) + t0;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    if (u0 + u >= n_tok) break;
#pragma unroll
    for (int x = 0; x < 4; ++x)
      p.y[(row0 + u0 + u) * p.C + h * N + r0 + x] = acc[x][u] + in.Y0[(u0 + u) * N + r0 + x];
  }
}
}  // namespace

cudaError_t LaunchWkv7Chunked(const Wkv7ChunkedParams& p, cudaStream_t s) {
  const Wkv7Params& b = p.base;
  if (b.items == 0 || p.max_len == 0) return cudaSuccess;
  if (p.seg_chunks < 1 || !p.scratch || b.H * N != b.C) return cudaErrorInvalidValue;
  if (b.rows_per_thread != 1 && b.rows_per_thread != 2 && b.rows_per_thread != 4) return cudaErrorInvalidValue;
  const int chunks = (p.max_len + L - 1) / L;
  const int pairs = b.items * b.H;  // pass B splits each (item, head) over rows when few
  const int max_blocks = 2 * p.sm_count;
  for (int c0 = 0; c0 < chunks; c0 += p.seg_chunks) {
    const dim3 grid_a(p.seg_chunks, b.H, b.items * 2);
    if (b.rows_per_thread == 4)
      Wkv7ChunkAKernel<4><<<grid_a, N * P / 4, 0, s>>>(p, c0);
    else if (b.rows_per_thread == 2)
      Wkv7ChunkAKernel<2><<<grid_a, N * P / 2, 0, s>>>(p, c0);
    else
      Wkv7ChunkAKernel<1><<<grid_a, N * P, 0, s>>>(p, c0);
    if (pairs * 4 <= max_blocks)
      Wkv7ChunkBKernel<4><<<dim3(b.H, b.items, 4), N * P, 0, s>>>(p, c0);
    else if (pairs * 2 <= max_blocks)
      Wkv7ChunkBKernel<2><<<dim3(b.H, b.items, 2), N * P, 0, s>>>(p, c0);
    else
      Wkv7ChunkBKernel<1><<<dim3(b.H, b.items, 1), N * P, 0, s>>>(p, c0);
    Wkv7ChunkCKernel<<<dim3(p.seg_chunks, b.H, b.items), N * P, 0, s>>>(p, c0);
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
