#include <algorithm>
#include <cstdint>

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

// Pass A. grid (the segment's chunks, H, items * 2), 256 / R threads. z = item * 2 + mode: mode 0
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

// Pass A in matrix form (bench/engine/pending/wkv7_chunk_matrix_form.py has the algebra and
// its float32 error against a float64 recurrence: 1.0-2.2x the token loop's; with the
// products in 3xTF32 <= 3.5x). grid (the segment's chunks, H, items), 256 threads, kMatSmem bytes of
// dynamic shared memory. Per chunk of L tokens (tokens past the item's end are identity
// steps: w = 1, the rest 0), with G_t the running product of the decays:
//   ~a_s = G_{s-1} a_s, ^b_s = b_s / G_s, ^k_s = k_s / G_s, ~r_t = G_t r_t (a = -kk, b = kk*alpha)
//   Abb[q][s] = ^b_q.~a_s (q < s), Akb likewise with ^k; Br[s][t] = ^b_s.~r_t (s <= t), Kr with ^k
//   T = (I - Abb)^-1, AT = ~A^T T, M = Akb T
//   Q_t = ~r_t + (AT Br)[:, t]            P = (I + AT ^B) diag(G_L)
//   y0_t = (V^T (M Br + Kr))[:, t]         D = V^T (M ^B + ^K) diag(G_L)
// written where pass A's token loop writes them (passes B and C unchanged). T without a
// 64-step chain: Td, the inverse of (I - Abb)'s four 16 x 16 diagonal blocks (substitution,
// 16 steps), then with Mb = Td Abb's part above those blocks (Mb^4 = 0):
//   T = (I - Mb)^-1 Td = (I + Mb + Mb^2 + Mb^3) Td.
// Every 64 x 64 x 64 product runs on tensor cores in 3xTF32 (each operand split into two
// tf32 parts, three mma.sync m16n8k8 a tile: float32's precision; plain tf32 is ~3000x
// worse, the .py above).
constexpr int kLd = N + 4;  // row stride (floats): fragment loads with at most 2-way bank conflicts
constexpr int kMatArrays = 12;
constexpr size_t kMatSmem = (static_cast<size_t>(kMatArrays) * L * kLd + 5 * N) * sizeof(float);
static_assert(L == N, "the matrix form takes square 64 x 64 blocks");

// x = hi + lo, both tf32 (float32 with the low 13 mantissa bits zero).
__device__ __forceinline__ void SplitTf32(float x, uint32_t& hi, uint32_t& lo) {
  uint32_t h, l;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(h) : "f"(x));
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(l) : "f"(x - __uint_as_float(h)));
  hi = h;
  lo = l;
}

// c += a b for a 16 x 8 x 8 tile (tf32 operands, float32 accumulation). Not volatile: the
// compiler may interleave independent tiles.
__device__ __forceinline__ void MmaTf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// C(m, n) = sum_k A(m, k) B(k, n) over 64 x 64 x 64 on tensor cores, 3xTF32;
// A(m, k) = kTA ? a[k][m] : a[m][k], B(k, n) = kTB ? b[n][k] : b[k][n] (row stride kLd).
// 256 threads: warp w computes rows 16 (w / 2) + [0, 16), columns 32 (w % 2) + [0, 32) (four
// 16 x 8 tiles) and hands each value to out(m, n, value). Reads only: call between barriers.
// Each k step issues one term over the four tiles before the next term, so that an mma
// waits on the one four back, not on the one before. The k loop is not unrolled: with the
// sixteen products unrolled (an estimated ~10K instructions) the warps stalled on
// instruction fetch (ncu, session 22 call 3: half of all stall cycles).
template <bool kTA, bool kTB, class Out>
__device__ __forceinline__ void Mm64(const float* a, const float* b, Out out) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;  // the mma fragments' row group and column pair
  const int m0 = (w >> 1) * 16, n0 = (w & 1) * 32;
  auto A = [&](int m, int k) { return kTA ? a[k * kLd + m] : a[m * kLd + k]; };
  auto B = [&](int k, int n) { return kTB ? b[n * kLd + k] : b[k * kLd + n]; };
  float acc[4][4] = {};
#pragma unroll 1
  for (int k0 = 0; k0 < N; k0 += 8) {
    uint32_t ah[4], al[4];  // a0 (gid, tig), a1 (gid + 8, tig), a2 (gid, tig + 4), a3 (gid + 8, tig + 4)
    SplitTf32(A(m0 + gid, k0 + tig), ah[0], al[0]);
    SplitTf32(A(m0 + gid + 8, k0 + tig), ah[1], al[1]);
    SplitTf32(A(m0 + gid, k0 + tig + 4), ah[2], al[2]);
    SplitTf32(A(m0 + gid + 8, k0 + tig + 4), ah[3], al[3]);
    uint32_t bh[4][2], bl[4][2];  // b0 (k = tig, n = gid), b1 (k = tig + 4, n = gid)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      SplitTf32(B(k0 + tig, n0 + 8 * nt + gid), bh[nt][0], bl[nt][0]);
      SplitTf32(B(k0 + tig + 4, n0 + 8 * nt + gid), bh[nt][1], bl[nt][1]);
    }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) MmaTf32(acc[nt], al, bh[nt][0], bh[nt][1]);  // the small terms first
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) MmaTf32(acc[nt], ah, bl[nt][0], bl[nt][1]);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) MmaTf32(acc[nt], ah, bh[nt][0], bh[nt][1]);
  }
#pragma unroll
  for (int nt = 0; nt < 4; ++nt) {  // c0 (gid, 2 tig), c1 (gid, 2 tig + 1), c2 / c3 at row gid + 8
    const int m = m0 + gid, n = n0 + 8 * nt + 2 * tig;
    out(m, n, acc[nt][0]);
    out(m, n + 1, acc[nt][1]);
    out(m + 8, n, acc[nt][2]);
    out(m + 8, n + 1, acc[nt][3]);
  }
}

__global__ void __launch_bounds__(256) Wkv7ChunkMatrixKernel(Wkv7ChunkedParams cp, int chunk0) {
  const Wkv7Params& p = cp.base;
  extern __shared__ __align__(16) float smem[];
  float* At = smem;            // [s][j] ~a
  float* Bh = At + L * kLd;    // [s][j] ^b
  float* Kh = Bh + L * kLd;    // [s][j] ^k, later M ^B + ^K
  float* Rt = Kh + L * kLd;    // [t][j] ~r
  float* Vs = Rt + L * kLd;    // [s][i] v
  float* Abb = Vs + L * kLd;   // [q][s]: Abb, then T
  float* Akb = Abb + L * kLd;  // [q][s]: I + Mb + Mb^2 + Mb^3, then Akb
  float* Br = Akb + L * kLd;   // [s][t]
  float* Kr = Br + L * kLd;    // [s][t], later M Br + Kr
  float* Td = Kr + L * kLd;    // [q][c] the diagonal blocks' inverse
  float* AT = Td + L * kLd;    // [q][s] Mb, then [j][t] AT
  float* Mq = AT + L * kLd;    // [q][s] Mb^2, then [q][t] M
  float* GL = Mq + L * kLd;    // [j] G_L
  float* GS = GL + N;          // [seg][j] the decays' product over each quarter of the chunk
  const int g = blockIdx.x, h = blockIdx.y, item = blockIdx.z;
  const int len = p.item_len[item];
  const int t0 = (chunk0 + g) * L;
  if (t0 >= len) return;  // uniform over the block
  const int n_tok = min(L, len - t0);
  const int row0 = p.item_row0[item] + t0;
  const int tid = threadIdx.x;
  // The chunk's inputs (identity steps past the item's end) and the running products of the
  // decays: thread (j, seg) loads column j of tokens [16 seg, +16) (a warp: 32 columns, one
  // 128-byte row piece a load), multiplies its segment's decays, and takes the product of the
  // earlier segments from shared memory.
  constexpr int kSeg = L / 4;
  const int j = tid & (N - 1), seg = tid / N;
  float rv[kSeg], wv[kSeg], kv[kSeg], kkv[kSeg], av[kSeg], vv[kSeg];
#pragma unroll
  for (int u = 0; u < kSeg; ++u) {
    const int t = seg * kSeg + u;
    rv[u] = 0.f, wv[u] = 1.f, kv[u] = 0.f, kkv[u] = 0.f, av[u] = 0.f, vv[u] = 0.f;
    if (t < n_tok) {
      const size_t o = static_cast<size_t>(row0 + t) * p.C + h * N + j;
      rv[u] = p.r[o];
      wv[u] = p.w[o];
      kv[u] = p.k[o];
      kkv[u] = p.kk[o];
      av[u] = p.a[o];
      vv[u] = p.v[o];
    }
  }
#pragma unroll
  for (int u = 1; u < kSeg; ++u) wv[u] *= wv[u - 1];  // running product inside the segment
  GS[seg * N + j] = wv[kSeg - 1];
  __syncthreads();
  float G0 = 1.f;  // the product of the earlier segments
  for (int q = 0; q < seg; ++q) G0 *= GS[q * N + j];
  if (seg == 3) GL[j] = G0 * wv[kSeg - 1];
#pragma unroll
  for (int u = 0; u < kSeg; ++u) {
    const int e = (seg * kSeg + u) * kLd + j;
    const float Gp = u ? G0 * wv[u - 1] : G0, G = G0 * wv[u], inv = 1.f / G;
    At[e] = -kkv[u] * Gp;
    Bh[e] = kkv[u] * av[u] * inv;
    Kh[e] = kv[u] * inv;
    Rt[e] = rv[u] * G;
    Vs[e] = vv[u];
  }
  __syncthreads();
  // Abb (strictly upper).
  Mm64<false, true>(Bh, At, [&](int q, int s, float x) { Abb[q * kLd + s] = q < s ? x : 0.f; });
  __syncthreads();
  if (tid < L) {  // Td: column c of its 16 x 16 diagonal block by substitution from the bottom
    const int c = tid, b0 = c & ~15;
    for (int q = 0; q < L; ++q) Td[q * kLd + c] = q == c ? 1.f : 0.f;
    for (int q = c - 1; q >= b0; --q) {
      float acc = 0.f;
      for (int s2 = q + 1; s2 <= c; ++s2) acc = __fmaf_rn(Abb[q * kLd + s2], Td[s2 * kLd + c], acc);
      Td[q * kLd + c] = acc;
    }
  }
  __syncthreads();
  // Mb = Td Abb above the diagonal blocks (Td is block diagonal: there Td Abb = Td No).
  Mm64<false, false>(Td, Abb, [&](int q, int s, float x) { AT[q * kLd + s] = (s >> 4) > (q >> 4) ? x : 0.f; });
  __syncthreads();
  Mm64<false, false>(AT, AT, [&](int q, int s, float x) { Mq[q * kLd + s] = x; });  // Mb^2
  __syncthreads();
  Mm64<false, false>(AT, Mq, [&](int q, int s, float x) {  // I + Mb + Mb^2 + Mb^3
    Akb[q * kLd + s] = (((q == s ? 1.f : 0.f) + AT[q * kLd + s]) + Mq[q * kLd + s]) + x;
  });
  __syncthreads();
  Mm64<false, false>(Akb, Td, [&](int q, int c, float x) { Abb[q * kLd + c] = x; });  // T
  __syncthreads();
  float* T = Abb;
  Mm64<false, true>(Kh, At, [&](int q, int s, float x) { Akb[q * kLd + s] = q < s ? x : 0.f; });
  Mm64<false, true>(Bh, Rt, [&](int s, int t, float x) { Br[s * kLd + t] = s <= t ? x : 0.f; });
  Mm64<false, true>(Kh, Rt, [&](int s, int t, float x) { Kr[s * kLd + t] = s <= t ? x : 0.f; });
  __syncthreads();
  Mm64<true, false>(At, T, [&](int j, int t, float x) { AT[j * kLd + t] = x; });
  Mm64<false, false>(Akb, T, [&](int q, int t, float x) { Mq[q * kLd + t] = x; });
  __syncthreads();
  const Scratch out = Slot(cp.scratch, item, g, h, cp.seg_chunks, p.H);
  Mm64<false, false>(AT, Br, [&](int i, int t, float x) { out.Q[t * N + i] = Rt[t * kLd + i] + x; });
  Mm64<false, false>(AT, Bh, [&](int i, int j, float x) { out.P[i * N + j] = ((i == j ? 1.f : 0.f) + x) * GL[j]; });
  Mm64<false, false>(Mq, Br, [&](int s, int t, float x) { Kr[s * kLd + t] += x; });  // Z = M Br + Kr
  Mm64<false, false>(Mq, Bh, [&](int s, int j, float x) { Kh[s * kLd + j] += x; });  // Z2 = M ^B + ^K
  __syncthreads();
  Mm64<true, false>(Vs, Kr, [&](int i, int t, float x) { out.Y0[t * N + i] = x; });
  Mm64<true, false>(Vs, Kh, [&](int i, int j, float x) { out.D[i * N + j] = x * GL[j]; });
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

// Pass C. grid (the segment's chunks, H, items), 256 threads: y_t = S_c Q_t + y0_t for the chunk's
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
  // The matrix form where asked for and the device lends its ~205 KB of shared memory a
  // block (sm_90: 227 KB; sm_80's 163 KB runs the token loop); set once per process.
  static const bool matrix_fits = [] {
    const bool ok = cudaFuncSetAttribute(Wkv7ChunkMatrixKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kMatSmem)) == cudaSuccess;
    cudaGetLastError();  // a refusal is not the caller's error
    return ok;
  }();
  const bool matrix = p.matrix_pass_a && matrix_fits;
  const int chunks = (p.max_len + L - 1) / L;
  const int pairs = b.items * b.H;  // pass B splits each (item, head) over rows when few
  const int max_blocks = 2 * p.sm_count;
  for (int c0 = 0; c0 < chunks; c0 += p.seg_chunks) {
    // Blocks for the chunks the longest item has in this segment only (the scratch may hold
    // many more: a block past an item's end returns at once, but with the matrix form's one
    // block an SM even those take turns).
    const int seg = std::min(p.seg_chunks, chunks - c0);
    if (matrix) {
      Wkv7ChunkMatrixKernel<<<dim3(seg, b.H, b.items), 256, kMatSmem, s>>>(p, c0);
    } else {
      const dim3 grid_a(seg, b.H, b.items * 2);
      if (b.rows_per_thread == 4)
        Wkv7ChunkAKernel<4><<<grid_a, N * P / 4, 0, s>>>(p, c0);
      else if (b.rows_per_thread == 2)
        Wkv7ChunkAKernel<2><<<grid_a, N * P / 2, 0, s>>>(p, c0);
      else
        Wkv7ChunkAKernel<1><<<grid_a, N * P, 0, s>>>(p, c0);
    }
    if (pairs * 4 <= max_blocks)
      Wkv7ChunkBKernel<4><<<dim3(b.H, b.items, 4), N * P, 0, s>>>(p, c0);
    else if (pairs * 2 <= max_blocks)
      Wkv7ChunkBKernel<2><<<dim3(b.H, b.items, 2), N * P, 0, s>>>(p, c0);
    else
      Wkv7ChunkBKernel<1><<<dim3(b.H, b.items, 1), N * P, 0, s>>>(p, c0);
    Wkv7ChunkCKernel<<<dim3(seg, b.H, b.items), N * P, 0, s>>>(p, c0);
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
