#include "kernels/attn_decode.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int kWarps = 4;

__device__ __forceinline__ int ItemKeys(const AttnItem& it, int chunk, int nsel, int* tail0) {
  *tail0 = it.sparse ? (it.ct / chunk) * chunk : 0;
  return nsel * chunk + (it.ct + 1 - *tail0);
}

// grid (H, items, splits), 128 threads. Each warp walks rows of the slice, lane holds dims
// 2*lane, 2*lane+1.
__global__ void __launch_bounds__(128) AttnDecodeKernel(AttnDecodeParams p) {
  __shared__ float sm[kWarps], sl[kWarps];
  __shared__ float sacc[kWarps][64];
  __shared__ int ssel[16];
  const int h = blockIdx.x, item = blockIdx.y, split = blockIdx.z;
  const AttnItem& it = p.items[item];
  if (it.len != 1) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int nsel = 0;
  if (it.sparse) nsel = min(p.topk, it.ct / p.chunk);
  if (threadIdx.x < nsel) ssel[threadIdx.x] = p.selected[item * p.topk + threadIdx.x];
  __syncthreads();
  int tail0;
  const int L = ItemKeys(it, p.chunk, nsel, &tail0);
  const int span = (L + p.splits - 1) / p.splits;
  const int v_begin = split * span, v_end = min(L, v_begin + span);

  const float2 q = *reinterpret_cast<const float2*>(p.q + static_cast<size_t>(it.row0) * p.C + h * 64 + 2 * lane);
  const float qx = q.x * 0.125f, qy = q.y * 0.125f;
  float m = -INFINITY, l = 0.f, ax = 0.f, ay = 0.f;
  const int sel_rows = nsel * p.chunk;
  for (int vi = v_begin + warp; vi < v_end; vi += kWarps) {
    const int row = vi < sel_rows ? ssel[vi / p.chunk] * p.chunk + vi % p.chunk : tail0 + (vi - sel_rows);
    const __half* kr = it.kv.K(row, p.C) + h * 64 + 2 * lane;
    const float2 kf = __half22float2(*reinterpret_cast<const __half2*>(kr));
    const float2 vf = __half22float2(*reinterpret_cast<const __half2*>(kr + it.kv.v_off));
    const float sc = WarpSum(qx * kf.x + qy * kf.y);
    const float mn = fmaxf(m, sc);
    const float corr = expf(m - mn), pw = expf(sc - mn);
    l = l * corr + pw;
    ax = ax * corr + pw * vf.x;
    ay = ay * corr + pw * vf.y;
    m = mn;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
  sacc[warp][2 * lane] = ax;
  sacc[warp][2 * lane + 1] = ay;
  __syncthreads();
  if (threadIdx.x < 64) {
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm[w]);
    float L2 = 0.f, A = 0.f;
    if (M != -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        if (sm[w] == -INFINITY) continue;
        const float f = expf(sm[w] - M);
        L2 += sl[w] * f;
        A += sacc[w][threadIdx.x] * f;
      }
    }
    float* part = p.part + ((static_cast<size_t>(item) * p.H + h) * p.splits + split) * 66;
    part[2 + threadIdx.x] = A;
    if (threadIdx.x == 0) { part[0] = M; part[1] = L2; }
  }
}

// grid (H, items), 64 threads.
__global__ void AttnDecodeCombineKernel(AttnDecodeParams p) {
  const int h = blockIdx.x, item = blockIdx.y;
  const AttnItem& it = p.items[item];
  if (it.len != 1) return;
  const float* part = p.part + (static_cast<size_t>(item) * p.H + h) * p.splits * 66;
  float M = -INFINITY;
  for (int s = 0; s < p.splits; ++s) M = fmaxf(M, part[s * 66]);
  float L = 0.f, A = 0.f;
  for (int s = 0; s < p.splits; ++s) {
    const float ms = part[s * 66];
    if (ms == -INFINITY) continue;
    const float f = expf(ms - M);
    L += part[s * 66 + 1] * f;
    A += part[s * 66 + 2 + threadIdx.x] * f;
  }
  StoreHalf(p.out, static_cast<size_t>(it.row0) * p.C + h * 64 + threadIdx.x, A / L, p.bf16);
}
}  // namespace

cudaError_t LaunchAttnDecode(const AttnDecodeParams& p, cudaStream_t s) {
  if (p.n_items == 0) return cudaSuccess;
  if (p.topk > 16) return cudaErrorInvalidValue;
  AttnDecodeKernel<<<dim3(p.H, p.n_items, p.splits), 128, 0, s>>>(p);
  AttnDecodeCombineKernel<<<dim3(p.H, p.n_items), 64, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
