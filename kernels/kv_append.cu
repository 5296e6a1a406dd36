#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/kv_append.cuh"

namespace rwkvx::kernels {
namespace {
__global__ void KvAppendKernel(KvAppendParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int r = blockIdx.x;
  const AttnItem& it = p.items[p.row_item[r]];
  __half* dk = it.kv.K(it.ct + (r - it.row0), p.C);
  __half* dv = dk + it.kv.v_off;
  const size_t src = static_cast<size_t>(r) * p.C;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    dk[c] = __float2half_rn(p.k[src + c]);
    dv[c] = __float2half_rn(p.v[src + c]);
  }
  if (!p.one_row_items) return;
  // ChunkSumUpdateKernel's sum for a one-row item (its s0 = 0 + k, s1..s3 = 0).
  const int ch = it.ct / p.chunk;
  float* sum = it.sums.Row(ch, p.C);
  const bool fresh = ch * p.chunk >= it.ct;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    float s0 = 0.f;
    s0 += p.k[src + c];
    const float base = fresh ? 0.f : sum[c];
    sum[c] = base + ((s0 + 0.f) + (0.f + 0.f));
  }
}

// grid (items, max_chunks_touched, ceil(C/128)).
__global__ void ChunkSumUpdateKernel(KvAppendParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const AttnItem& it = p.items[blockIdx.x];
  const int col = blockIdx.z * blockDim.x + threadIdx.x;
  if (col >= p.C || it.len == 0) return;
  const int B = p.chunk;
  const int c = it.ct / B + blockIdx.y;
  const int begin = max(it.ct, c * B), end = min(it.ct + it.len, (c + 1) * B);
  if (begin >= end) return;
  // Four independent partial sums keep several loads in flight (fixed order: deterministic).
  const float* k = p.k + static_cast<size_t>(it.row0 + (begin - it.ct)) * p.C + col;  // step row of `begin`
  const int n = end - begin;
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  int r = 0;
  // Rows 32 at a time: the 32 loads issued together, then added in the 4-row loop's order
  // (s0..s3 take rows r mod 4, in row order): the same bits, 32 loads in flight a thread
  // instead of the compiler's ~16 (ncu: 52 us a call for 1024 rows of the 0.2B with 6
  // blocks, each thread waiting on ~64 memory round trips).
  for (; r + 31 < n; r += 32) {
    float v[32];
#pragma unroll
    for (int u = 0; u < 32; ++u) v[u] = k[static_cast<size_t>(r + u) * p.C];
#pragma unroll
    for (int u = 0; u < 32; u += 4) {
      s0 += v[u];
      s1 += v[u + 1];
      s2 += v[u + 2];
      s3 += v[u + 3];
    }
  }
  for (; r + 3 < n; r += 4) {
    s0 += k[static_cast<size_t>(r) * p.C];
    s1 += k[static_cast<size_t>(r + 1) * p.C];
    s2 += k[static_cast<size_t>(r + 2) * p.C];
    s3 += k[static_cast<size_t>(r + 3) * p.C];
  }
  for (; r < n; ++r) s0 += k[static_cast<size_t>(r) * p.C];
  float* sum = it.sums.Row(c, p.C) + col;
  const float base = c * B < it.ct ? *sum : 0.f;
  *sum = base + ((s0 + s1) + (s2 + s3));
}

__global__ void ChunkSumsKernel(ChunkSumsParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int c = blockIdx.x;
  const int col = blockIdx.y * blockDim.x + threadIdx.x;
  if (col >= p.C) return;
  const int end = min(p.ct, (c + 1) * p.chunk);
  float s = 0.f;
  for (int row = c * p.chunk; row < end; ++row) s += __half2float(p.kv.K(row, p.C)[col]);
  p.sums.Row(c, p.C)[col] = s;
}
}  // namespace

cudaError_t LaunchKvAppend(const KvAppendParams& p, cudaStream_t s) {
  if (p.rows == 0 || p.n_items == 0) return cudaSuccess;
  if (p.one_row_items && p.rows != p.n_items) return cudaErrorInvalidValue;
  RWKVX_KLAUNCH(KvAppendKernel, p.rows, 256, 0, s, p);
  if (!p.one_row_items)
    RWKVX_KLAUNCH(ChunkSumUpdateKernel, dim3(p.n_items, p.max_chunks_touched, CeilDiv(p.C, 128)), 128, 0, s, p);
  return cudaGetLastError();
}

cudaError_t LaunchChunkSums(const ChunkSumsParams& p, cudaStream_t s) {
  if (p.ct == 0) return cudaSuccess;
  RWKVX_KLAUNCH(ChunkSumsKernel, dim3(CeilDiv(p.ct, p.chunk), CeilDiv(p.C, 128)), 128, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
