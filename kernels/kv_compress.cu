#include <cub/cub.cuh>

#include "kernels/kernel_util.cuh"
#include "kernels/kv_compress.cuh"

namespace rwkvx::kernels {
namespace {
// Per (query, head): max and sum of exp of the scores over the older rows.
// grid (nq, H), 128 threads.
__global__ void VoteStatsKernel(KvCompressParams p, float* stat_m, float* stat_l) {
  __shared__ float sm[4], sl[4];
  const int qi = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float2 q = *reinterpret_cast<const float2*>(p.q + static_cast<size_t>(qi) * p.C + h * 64 + 2 * lane);
  float m = -INFINITY, l = 0.f;
  for (int t = warp; t < p.npast; t += 4) {
    const float2 kf = __half22float2(*reinterpret_cast<const __half2*>(p.kv.K(t, p.C) + h * 64 + 2 * lane));
    const float sc = WarpSum(q.x * kf.x + q.y * kf.y) * 0.125f;
    const float mn = fmaxf(m, sc);
    l = l * expf(m - mn) + expf(sc - mn);
    m = mn;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = -INFINITY, L = 0.f;
    for (int w = 0; w < 4; ++w) M = fmaxf(M, sm[w]);
    for (int w = 0; w < 4; ++w)
      if (sm[w] != -INFINITY) L += sl[w] * expf(sm[w] - M);
    stat_m[qi * p.H + h] = M;
    stat_l[qi * p.H + h] = L;
  }
}

// votes[h, t] = sum_q exp(s_qt - m_q) / l_q.  grid (ceil(npast/128), H), 128 threads.
__global__ void __launch_bounds__(128) VoteKernel(KvCompressParams p, const float* stat_m, const float* stat_l,
                                                  float* votes, int* index) {
  __shared__ float Qs[32][64];
  __shared__ float Ms[32], Ls[32];
  const int h = blockIdx.y;
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  float kr[64];
  if (t < p.npast) {
    const __half* krow = p.kv.K(t, p.C) + h * 64;
#pragma unroll
    for (int d = 0; d < 64; d += 2) {
      const float2 kf = __half22float2(*reinterpret_cast<const __half2*>(krow + d));
      kr[d] = kf.x;
      kr[d + 1] = kf.y;
    }
  }
  float vote = 0.f;
  for (int q0 = 0; q0 < p.nq; q0 += 32) {
    const int qn = min(32, p.nq - q0);
    __syncthreads();
    for (int idx = threadIdx.x; idx < qn * 64; idx += blockDim.x)
      Qs[idx / 64][idx % 64] = p.q[static_cast<size_t>(q0 + idx / 64) * p.C + h * 64 + idx % 64];
    if (threadIdx.x < qn) {
      Ms[threadIdx.x] = stat_m[(q0 + threadIdx.x) * p.H + h];
      Ls[threadIdx.x] = stat_l[(q0 + threadIdx.x) * p.H + h];
    }
    __syncthreads();
    if (t < p.npast) {
      for (int qi = 0; qi < qn; ++qi) {
        float sc = 0.f;
#pragma unroll
        for (int d = 0; d < 64; ++d) sc += Qs[qi][d] * kr[d];
        vote += expf(sc * 0.125f - Ms[qi]) / Ls[qi];
      }
    }
  }
  if (t < p.npast) {
    votes[static_cast<size_t>(h) * p.npast + t] = vote;
    index[static_cast<size_t>(h) * p.npast + t] = t;
  }
}

// grid (new_ct), 256 threads.
__global__ void CompactKernel(KvCompressParams p, const int* sorted_index) {
  const int n = blockIdx.x;
  __half* dk = p.out.K(n, p.C);
  __half* dv = dk + p.out.v_off;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    const int h = c / 64;
    const int src = n < p.keep ? sorted_index[static_cast<size_t>(h) * p.npast + n] : p.npast + (n - p.keep);
    const __half* sk = p.kv.K(src, p.C);
    dk[c] = sk[c];
    dv[c] = sk[p.kv.v_off + c];
  }
}

__global__ void SegmentOffsetsKernel(int* offsets, int H, int npast) {
  const int i = threadIdx.x;
  if (i <= H) offsets[i] = i * npast;
}
}  // namespace

cudaError_t LaunchKvCompress(const KvCompressParams& p, cudaStream_t s) {
  if (p.npast <= 0 || p.nq <= 0) return cudaErrorInvalidValue;
  const size_t n = static_cast<size_t>(p.H) * p.npast;
  // Scratch: stats (2*nq*H), votes in/out (2n), index in/out (2n), offsets (H+1), cub temp.
  size_t temp_bytes = 0;
  cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, temp_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(n), p.H,
      static_cast<const int*>(nullptr), static_cast<const int*>(nullptr), 0, 32, s);
  if (e != cudaSuccess) return e;
  const size_t stat_bytes = 2 * sizeof(float) * p.nq * p.H;
  const size_t total = stat_bytes + 2 * n * sizeof(float) + 2 * n * sizeof(int) + (p.H + 1) * sizeof(int) + temp_bytes + 256;
  char* base = nullptr;
  e = cudaMallocAsync(reinterpret_cast<void**>(&base), total, s);
  if (e != cudaSuccess) return e;
  char* cur = base;
  auto take = [&](size_t bytes) { char* r = cur; cur += (bytes + 15) / 16 * 16; return r; };
  float* stat_m = reinterpret_cast<float*>(take(sizeof(float) * p.nq * p.H));
  float* stat_l = reinterpret_cast<float*>(take(sizeof(float) * p.nq * p.H));
  float* votes = reinterpret_cast<float*>(take(n * sizeof(float)));
  float* votes_sorted = reinterpret_cast<float*>(take(n * sizeof(float)));
  int* index = reinterpret_cast<int*>(take(n * sizeof(int)));
  int* index_sorted = reinterpret_cast<int*>(take(n * sizeof(int)));
  int* offsets = reinterpret_cast<int*>(take((p.H + 1) * sizeof(int)));
  void* temp = take(temp_bytes);

  VoteStatsKernel<<<dim3(p.nq, p.H), 128, 0, s>>>(p, stat_m, stat_l);
  VoteKernel<<<dim3(CeilDiv(p.npast, 128), p.H), 128, 0, s>>>(p, stat_m, stat_l, votes, index);
  SegmentOffsetsKernel<<<1, 1024, 0, s>>>(offsets, p.H, p.npast);
  e = cudaGetLastError();
  if (e == cudaSuccess)
    e = cub::DeviceSegmentedRadixSort::SortPairsDescending(temp, temp_bytes, votes, votes_sorted, index,
                                                           index_sorted, static_cast<int>(n), p.H, offsets,
                                                           offsets + 1, 0, 32, s);
  if (e == cudaSuccess && p.votes)
    e = cudaMemcpyAsync(p.votes, votes, n * sizeof(float), cudaMemcpyDeviceToDevice, s);
  if (e == cudaSuccess) {
    const int new_ct = p.keep + (p.ct - p.npast);
    CompactKernel<<<new_ct, 256, 0, s>>>(p, index_sorted);
    e = cudaGetLastError();
  }
  cudaError_t f = cudaFreeAsync(base, s);
  return e != cudaSuccess ? e : f;
}

}  // namespace rwkvx::kernels
