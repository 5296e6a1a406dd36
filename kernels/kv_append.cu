#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/kv_append_row.cuh"

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
  // ChunkSumUpdateKernel's sum for a one-row item (kernels/kv_append_row.cuh).
  const int ch = it.ct / p.chunk;
  float* sum = it.sums.Row(ch, p.C);
  const bool fresh = ch * p.chunk >= it.ct;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) sum[c] = OneRowChunkSum(sum, c, fresh, p.k[src + c]);
}

// grid (items, max_chunks_touched, ceil(C/32)), 128 threads: lane = column, warp j = the
// partial sum s_j of the rows j mod 4 (relative to the item's first new row in the chunk),
// in row order; s_0 then also takes the last n mod 4 rows, in order. Warp 0 writes
// base + ((s0 + s1) + (s2 + s3)): every sum in the order a single thread's 4-way unrolled
// loop adds them (deterministic; decode's one-row form in KvAppendKernel is its n = 1 case).
// Four warps a 32-column slice (rather than one thread a column walking all rows) keep 4x
// the loads in flight: a 0.2B 1K prefill had 6 blocks on 132 SMs.
__global__ void ChunkSumUpdateKernel(KvAppendParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float part[4][32];
  const AttnItem& it = p.items[blockIdx.x];
  const int lane = threadIdx.x & 31, j = threadIdx.x >> 5;
  const int col = blockIdx.z * 32 + lane;
  if (it.len == 0) return;  // uniform over the block
  const int B = p.chunk;
  const int c = it.ct / B + blockIdx.y;
  const int begin = max(it.ct, c * B), end = min(it.ct + it.len, (c + 1) * B);
  if (begin >= end) return;  // uniform over the block
  const int n = end - begin, n4 = n & ~3;
  float s = 0.f;
  if (col < p.C) {
    const float* k = p.k + static_cast<size_t>(it.row0 + (begin - it.ct)) * p.C + col;  // step row of `begin`
    int r = j;
    for (; r + 4 * 31 < n4; r += 4 * 32) {  // 32 rows issued together, then added in order
      float v[32];
#pragma unroll
      for (int u = 0; u < 32; ++u) v[u] = k[static_cast<size_t>(r + 4 * u) * p.C];
#pragma unroll
      for (int u = 0; u < 32; ++u) s += v[u];
    }
    for (; r < n4; r += 4) s += k[static_cast<size_t>(r) * p.C];
    if (j == 0)
      for (r = n4; r < n; ++r) s += k[static_cast<size_t>(r) * p.C];
  }
  part[j][lane] = s;
  __syncthreads();
  if (j != 0 || col >= p.C) return;
  float* sum = it.sums.Row(c, p.C) + col;
  const float base = c * B < it.ct ? *sum : 0.f;
  *sum = base + ((part[0][lane] + part[1][lane]) + (part[2][lane] + part[3][lane]));
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
    RWKVX_KLAUNCH(ChunkSumUpdateKernel, dim3(p.n_items, p.max_chunks_touched, CeilDiv(p.C, 32)), 128, 0, s, p);
  return cudaGetLastError();
}

cudaError_t LaunchChunkSums(const ChunkSumsParams& p, cudaStream_t s) {
  if (p.ct == 0) return cudaSuccess;
  RWKVX_KLAUNCH(ChunkSumsKernel, dim3(CeilDiv(p.ct, p.chunk), CeilDiv(p.C, 128)), 128, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
