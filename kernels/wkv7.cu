#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/rwkv7_pair.cuh"
#include "kernels/wkv7_inner.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = wkv7::kN;
constexpr int P = wkv7::kP;  // threads per state row
constexpr int J = wkv7::kJ;  // columns per thread

// grid (H, items), 256 / R threads: thread t owns columns [(t%4)*16, +16) of rows t/4 + r*64/R
// of the head's state in registers and runs the item's tokens through wkv7::Wkv7TokensRows
// (inputs staged in shared memory TC tokens at a time, conflict-free float4 reads).
// Four blocks an SM at every R (ptxas sm_90a: 64 / 110 / 179 registers at R = 1 / 2 / 4).
template <int R>
__global__ void __launch_bounds__(N * P / R, 4) Wkv7Kernel(Wkv7Params p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ __align__(16) wkv7::StageRwk sh;
  __shared__ wkv7::StageV sv;
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int g = t / P, part = t % P, j0 = part * J;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[R][J];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int jj = 0; jj < J; ++jj) s[r][jj] = S[(j0 + jj) * N + g + r * (N / R)];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  wkv7::Wkv7TokensRows<R>(s, sh, sv, p, row0, len, h, /*zero_v=*/false, [&](int tok, int i, float y) {
    p.y[static_cast<size_t>(row0 + tok) * p.C + h * N + i] = y;
  });
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int jj = 0; jj < J; ++jj) S[(j0 + jj) * N + g + r * (N / R)] = s[r][jj];
}

// Wkv7DecodeParams (wkv7.cuh): warp 0 preps the head's 64 columns of the item's row into
// the staging layout of wkv7::Wkv7Step (and keeps r, k, v for the post), the block runs
// the one token, warp 0 normalises and gates the head's output. kPrefetch: warp 0 loads the
// post's inputs at the start, into shared memory (registers would have to live across the
// step in every thread), so that the post does not wait for memory after the step.
// kEarly (Wkv7DecodeParams::early): warp 0 loads the layer's vectors (the prep's a0, k_k,
// k_a, w0, v0 and the post's r_k, ln_w, ln_b) and every thread its part of the head's
// state before the PDL wait: no kernel writes the vectors (kernels/launch.cuh) and the
// state was last written by this launch site a step ago, so their latency overlaps the
// kernel before; the post's three vectors go through shared memory.
template <bool kPrefetch, bool kEarly>
__global__ void __launch_bounds__(N * P, 4) Wkv7DecodeKernel(Wkv7DecodeParams p) {
  if constexpr (!kEarly) {
    PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
    PdlTrigger();
  }
  constexpr bool kStaged = kPrefetch || kEarly;  // post_in holds the post's vectors
  __shared__ __align__(16) float tk[5][P][wkv7::kSEG];
  __shared__ float sv[N], ys[N];
  __shared__ __align__(8) float post_in[kStaged ? 4 : 1][kStaged ? N : 1];  // g (kPrefetch), r_k, ln_w, ln_b
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int i = t / P, part = t % P, j0 = part * J;
  using rwkv7::Load2;
  const int c = 2 * t, cc = h * N + c;  // (warp 0's lanes)
  const bool first = p.prep.first_layer;
  const float2 zero = make_float2(0.f, 0.f);
  float2 lv[8] = {};  // kEarly: a0, k_k, k_a, w0, v0, r_k, ln_w, ln_b
  if (kEarly && t < 32) {
    lv[0] = Load2(p.prep.a0, cc);
    lv[1] = Load2(p.prep.k_k, cc);
    lv[2] = Load2(p.prep.k_a, cc);
    lv[3] = Load2(p.prep.w0, cc);
    if (!first) lv[4] = Load2(p.prep.v0, cc);
    lv[5] = Load2(p.post.r_k, cc);
    lv[6] = Load2(p.post.ln_w, cc);
    lv[7] = Load2(p.post.ln_b, cc);
  }
  float* S = p.wkv.item_state[it] + p.wkv.state_off + static_cast<size_t>(h) * N * N;
  float s[J];
#pragma unroll
  for (int jj = 0; jj < J; ++jj) s[jj] = S[(j0 + jj) * N + i];
  if constexpr (kEarly) {
    PdlWait();  // before any other memory access or early return (kernels/launch.cuh)
    PdlTrigger();
  }
  const size_t o = static_cast<size_t>(p.wkv.item_row0[it]) * p.wkv.C + cc;
  float2 r2 = {}, k2 = {}, v2 = {};
  if (t < 32) {
    // (Issued with the prep's loads; stored to shared memory only after the prep's math, so
    // that no store waits for them before the prep's loads are out.)
    float2 pin[4];
    if constexpr (kPrefetch) pin[0] = Load2(p.post.g, o);
    if constexpr (kEarly) {
      pin[1] = lv[5];
      pin[2] = lv[6];
      pin[3] = lv[7];
    } else if constexpr (kPrefetch) {
      pin[1] = Load2(p.post.r_k, cc);
      pin[2] = Load2(p.post.ln_w, cc);
      pin[3] = Load2(p.post.ln_b, cc);
    }
    const rwkv7::PrepOut q = rwkv7::PrepPair(
        Load2(p.wkv.a, o), Load2(p.wkv.k, o), Load2(p.wkv.v, o), Load2(p.wkv.w, o), first ? zero : Load2(p.prep.vg, o),
        first ? zero : Load2(p.prep.v_first, o), kEarly ? lv[0] : Load2(p.prep.a0, cc),
        kEarly ? lv[1] : Load2(p.prep.k_k, cc), kEarly ? lv[2] : Load2(p.prep.k_a, cc),
        kEarly ? lv[3] : Load2(p.prep.w0, cc), first ? zero : kEarly ? lv[4] : Load2(p.prep.v0, cc), first);
    if (first) *reinterpret_cast<float2*>(p.prep.v_first + o) = q.v;
    r2 = Load2(p.wkv.r, o);
    k2 = q.k;
    v2 = q.v;
    const float vals[5][2] = {{r2.x, r2.y}, {q.w.x, q.w.y}, {q.k.x, q.k.y}, {-q.kk.x, -q.kk.y},
                              {q.kk.x * q.a.x, q.kk.y * q.a.y}};
#pragma unroll
    for (int vec = 0; vec < 5; ++vec) {
      wkv7::Staged(tk, vec, c) = vals[vec][0];
      wkv7::Staged(tk, vec, c + 1) = vals[vec][1];
    }
    sv[c] = q.v.x;
    sv[c + 1] = q.v.y;
    if constexpr (kStaged) {
#pragma unroll
      for (int k = kPrefetch ? 0 : 1; k < 4; ++k) *reinterpret_cast<float2*>(&post_in[k][c]) = pin[k];
    }
  }
  __syncthreads();
  const float y = wkv7::Wkv7Step(s, tk, sv, i, part);
  if (part == 0) ys[i] = y;
#pragma unroll
  for (int jj = 0; jj < J; ++jj) S[(j0 + jj) * N + i] = s[jj];
  __syncthreads();
  if (t < 32) {
    auto staged = [&](int k) { return *reinterpret_cast<const float2*>(&post_in[k][c]); };
    const float2 g2 = kPrefetch ? staged(0) : Load2(p.post.g, o);
    const float2 rk2 = kStaged ? staged(1) : Load2(p.post.r_k, cc);
    const float2 lnw2 = kStaged ? staged(2) : Load2(p.post.ln_w, cc);
    const float2 lnb2 = kStaged ? staged(3) : Load2(p.post.ln_b, cc);
    const float2 out = rwkv7::PostPair(make_float2(ys[c], ys[c + 1]), r2, k2, v2, g2, rk2, lnw2, lnb2, p.post.eps);
    StoreHalf(p.post.out, o, out.x, p.post.bf16);
    StoreHalf(p.post.out, o + 1, out.y, p.post.bf16);
  }
}
}  // namespace

cudaError_t LaunchWkv7Decode(const Wkv7DecodeParams& p, cudaStream_t s) {
  if (p.wkv.items == 0) return cudaSuccess;
  const dim3 grid(p.wkv.H, p.wkv.items);
  if (p.prefetch_post && p.early)
    RWKVX_KLAUNCH((Wkv7DecodeKernel<true, true>), grid, N * P, 0, s, p);
  else if (p.prefetch_post)
    RWKVX_KLAUNCH((Wkv7DecodeKernel<true, false>), grid, N * P, 0, s, p);
  else if (p.early)
    RWKVX_KLAUNCH((Wkv7DecodeKernel<false, true>), grid, N * P, 0, s, p);
  else
    RWKVX_KLAUNCH((Wkv7DecodeKernel<false, false>), grid, N * P, 0, s, p);
  return cudaGetLastError();
}

cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s) {
  if (p.items == 0) return cudaSuccess;
  switch (p.rows_per_thread) {
    case 1: RWKVX_KLAUNCH(Wkv7Kernel<1>, dim3(p.H, p.items), N * P, 0, s, p); break;
    case 2: RWKVX_KLAUNCH(Wkv7Kernel<2>, dim3(p.H, p.items), N * P / 2, 0, s, p); break;
    case 4: RWKVX_KLAUNCH(Wkv7Kernel<4>, dim3(p.H, p.items), N * P / 4, 0, s, p); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
