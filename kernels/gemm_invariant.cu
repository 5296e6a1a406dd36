#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/gemm_invariant.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/launch.cuh"
#include "kernels/mma.cuh"

namespace rwkvx::kernels {
namespace {

constexpr int kBM = 64;    // outputs (weight rows) a block
constexpr int kBN = 128;   // x rows a block
constexpr int kWin = 32;   // columns a window (the skinny kernel's half-weight window)
constexpr int kSkinnyWarps = 8;  // the skinny kernel's warps: the window stride and the sum's terms
constexpr int kThreads = 256;
constexpr int kWarpsN = 4;  // warps across the rows; 2 across the outputs
constexpr int kWM = 32, kWN = 32;

struct Stage {
  uint4 w[kBM][kWin / 8];  // 8 halves a uint4: row o's window columns [8q, 8q + 8)
  uint4 x[kBN][kWin / 8];
};

__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void CpCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// The block's window `win` of weights (kBM rows from o0) and x (kBN rows from r0) into a
// stage; rows past the ends are zeros.
__device__ __forceinline__ void LoadStage(const GemvParams& p, int o0, int r0, int win, Stage& st) {
  const char* w = static_cast<const char*>(p.w);
  const char* x = static_cast<const char*>(p.x);
  const int k = win * kWin;
  for (int e = threadIdx.x; e < kBM * 4; e += kThreads) {
    const int row = e >> 2, q = e & 3, o = o0 + row;
    const bool ok = o < p.out;
    CpAsync16(&st.w[row][q], w + (static_cast<size_t>(ok ? o : 0) * p.in + k + 8 * q) * 2, ok);
  }
  for (int e = threadIdx.x; e < kBN * 4; e += kThreads) {
    const int row = e >> 2, q = e & 3, r = r0 + row;
    const bool ok = r < p.rows;
    CpAsync16(&st.x[row][q], x + (static_cast<size_t>(ok ? r : 0) * p.in + k + 8 * q) * 2, ok);
  }
}

// grid (ceil(rows / kBN), sum over jobs of ceil(out / kBM)), 256 threads.
template <bool kBf16>
__global__ void __launch_bounds__(kThreads) InvariantGemmKernel(GemvGroupParams gp) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ __align__(16) Stage stage[2];
  int b = blockIdx.y, j = 0;
  for (; j < gp.n_jobs - 1; ++j) {
    const int nb = (gp.job[j].out + kBM - 1) / kBM;
    if (b < nb) break;
    b -= nb;
  }
  const GemvParams& p = gp.job[j];
  const int o0 = b * kBM, r0 = blockIdx.x * kBN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int wm = (warp / kWarpsN) * kWM, wn = (warp % kWarpsN) * kWN;
  const int nwin = p.in / kWin;

  float acc[2][4][4], total[2][4][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = total[mi][ni][e] = 0.f;

  // The windows in the skinny kernel's order: w = 0..7, and for each w the windows w, w + 8, ...
  int w = 0, win = 0;
  auto valid = [&](int ww, int wi) { return ww < kSkinnyWarps && wi < nwin; };
  LoadStage(p, o0, r0, 0, stage[0]);
  CpCommit();
  for (int step = 0;; ++step) {
    int nw = w, nwi = win + kSkinnyWarps;
    if (nwi >= nwin) {
      nw = w + 1;
      nwi = nw;
    }
    const bool more = valid(nw, nwi);
    if (more) {
      LoadStage(p, o0, r0, nwi, stage[(step + 1) & 1]);
      CpCommit();
      CpWait<1>();
    } else {
      CpWait<0>();
    }
    __syncthreads();
    const Stage& st = stage[step & 1];
    uint4 wa[2], wb[2], xv[4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      wa[mi] = st.w[wm + mi * 16 + g][t];
      wb[mi] = st.w[wm + mi * 16 + g + 8][t];
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) xv[ni] = st.x[wn + ni * 8 + g][t];
    // The skinny kernel's two MMA steps of a half window: columns 4j, 4j+1 of the lane's
    // eight as k = 2t, 2t+1 and 4j+2, 4j+3 as k = 2t+8, 2t+9, for A and B alike.
#pragma unroll
    for (int jj = 0; jj < 2; ++jj)
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
          Mma16816<kBf16>(acc[mi][ni], Reg(wa[mi], 2 * jj), Reg(wb[mi], 2 * jj), Reg(wa[mi], 2 * jj + 1),
                     Reg(wb[mi], 2 * jj + 1), Reg(xv[ni], 2 * jj), Reg(xv[ni], 2 * jj + 1));
    if (nw != w || !more) {  // warp w's sum is complete: onto the total, in w order
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            total[mi][ni][e] += acc[mi][ni][e];
            acc[mi][ni][e] = 0.f;
          }
    }
    __syncthreads();  // the stage just read is the next load's target
    if (!more) break;
    w = nw;
    win = nwi;
  }
  // C fragment: [0..1] = (output g, rows 2t, 2t+1), [2..3] = (output g + 8, same).
  const bool bf16 = kBf16;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int o = o0 + wm + mi * 16 + g + (e >= 2 ? 8 : 0);
        const int r = r0 + wn + ni * 8 + 2 * t + (e & 1);
        if (o >= p.out || r >= p.rows) continue;
        const float v = total[mi][ni][e];
        const size_t at = static_cast<size_t>(r) * p.out + o;
        if (p.y)
          p.y[at] = p.accumulate ? p.y[at] + v : v;
        else
          StoreHalf(p.y_half, at, ApplyAct(p.act, v), bf16);
      }
}

}  // namespace

cudaError_t LaunchInvariantGemm(const GemvGroupParams& p, cudaStream_t s) {
  if (p.n_jobs < 1 || p.n_jobs > kGemvMaxJobs) return cudaErrorInvalidValue;
  const int rows = p.job[0].rows;
  unsigned tiles = 0;
  for (int j = 0; j < p.n_jobs; ++j) {
    const GemvParams& q = p.job[j];
    if (q.rows != rows || q.bf16 != p.job[0].bf16 || !InvariantGemmFits(q) || (!q.y && !q.y_half))
      return cudaErrorInvalidValue;
    tiles += CeilDiv(q.out, kBM);
  }
  if (tiles > 65535u) return cudaErrorInvalidValue;
  const dim3 grid(CeilDiv(rows, kBN), tiles);
  if (p.job[0].bf16)
    RWKVX_KLAUNCH(InvariantGemmKernel<true>, grid, kThreads, 0, s, p);
  else
    RWKVX_KLAUNCH(InvariantGemmKernel<false>, grid, kThreads, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
