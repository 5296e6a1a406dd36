#include "kernels/launch.cuh"
#include "kernels/chunk_select.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
// grid (items), 256 threads; shared: max_chunks floats of scores, then C floats of q. Warp w
// scores chunks w, w + 8, ... (lane l sums channels l, l + 32, ... in that order, then a
// fixed shuffle tree); warp 0 then takes the top k one at a time (the highest score, the
// lowest index on a tie). Before session 22 the block scored the chunks one after another,
// a block-wide reduction each (16 us a call at 32K context on an H100, ncu: more than the
// attention over the chunks it picks); session 22's form still took 14.5 us a call at 32K
// context (H100, ncu, bench/engine/results/h100_2026-12-06_s25/call3): its channel loop ran
// with few loads in flight (PTX: unrolled by 4, q and the sums both from global memory,
// a division between). Now q is staged in
// shared memory by the whole block and each lane issues kBatch chunk-sum loads before
// using the first: the same products summed in the same order (the same scores, the same
// selection).
constexpr int kBatch = 16;
__global__ void ChunkSelectKernel(ChunkSelectParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  extern __shared__ float shm[];
  float* score = shm;
  float* qs = shm + p.max_chunks;
  const AttnItem& it = p.items[blockIdx.x];
  if (it.len != 1 || !it.sparse) return;  // block-uniform: before the barrier
  const int nchunks = it.ct / p.chunk;
  const float* q = p.q + static_cast<size_t>(it.row0) * p.C;
  for (int j = threadIdx.x; j < p.C; j += blockDim.x) qs[j] = q[j];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int c = warp; c < nchunks; c += warps) {
    const float* sum = it.sums.Row(c, p.C);
    float d = 0.f;
    for (int j0 = lane; j0 < p.C; j0 += 32 * kBatch) {
      float sv[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int j = j0 + 32 * u;
        sv[u] = j < p.C ? sum[j] : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int j = j0 + 32 * u;
        if (j < p.C) d += qs[j] * (sv[u] / p.chunk);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    if (lane == 0) score[c] = d;
  }
  __syncthreads();
  if (warp != 0) return;
  const int k = min(p.topk, nchunks);
  for (int sel = 0; sel < p.topk; ++sel) {
    if (sel >= k) {
      if (lane == 0) p.selected[blockIdx.x * p.topk + sel] = -1;
      continue;
    }
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int c = lane; c < nchunks; c += 32) {
      const float v = score[c];
      if (v > bv || (v == bv && c < bi)) { bv = v; bi = c; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) {
      p.selected[blockIdx.x * p.topk + sel] = bi;
      score[bi] = -INFINITY;  // taken
    }
    __syncwarp();
  }
}
}  // namespace

cudaError_t LaunchChunkSelect(const ChunkSelectParams& p, cudaStream_t s) {
  if (p.n_items == 0 || p.max_chunks == 0) return cudaSuccess;
  const size_t smem = static_cast<size_t>(p.max_chunks + p.C) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(ChunkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  RWKVX_KLAUNCH(ChunkSelectKernel, p.n_items, 256, smem, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
