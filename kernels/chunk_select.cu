#include "kernels/launch.cuh"
#include "kernels/chunk_select.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
// grid (items), 256 threads; shared: max_chunks floats.
__global__ void ChunkSelectKernel(ChunkSelectParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  extern __shared__ float score[];
  __shared__ float scratch[33];
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  const AttnItem& it = p.items[blockIdx.x];
  if (it.len != 1 || !it.sparse) return;
  const int nchunks = it.ct / p.chunk;
  const float* q = p.q + static_cast<size_t>(it.row0) * p.C;
  for (int c = 0; c < nchunks; ++c) {
    const float* sum = it.sums.Row(c, p.C);
    float d = 0.f;
    for (int j = threadIdx.x; j < p.C; j += blockDim.x) d += q[j] * (sum[j] / p.chunk);
    d = BlockSum(d, scratch);
    if (threadIdx.x == 0) score[c] = d;
  }
  __syncthreads();
  const int k = min(p.topk, nchunks);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int sel = 0; sel < p.topk; ++sel) {
    if (sel >= k) {
      if (threadIdx.x == 0) p.selected[blockIdx.x * p.topk + sel] = -1;
      continue;
    }
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int c = threadIdx.x; c < nchunks; c += blockDim.x) {
      const float v = score[c];
      if (v > bv || (v == bv && c < bi)) { bv = v; bi = c; }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    if (lane == 0) { best_v[warp] = bv; best_i[warp] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
      float v = best_v[0];
      int i = best_i[0];
      for (int w = 1; w < (int)(blockDim.x >> 5); ++w)
        if (best_v[w] > v || (best_v[w] == v && best_i[w] < i)) { v = best_v[w]; i = best_i[w]; }
      p.selected[blockIdx.x * p.topk + sel] = i;
      score[i] = -INFINITY;  // taken
    }
    __syncthreads();
  }
}
}  // namespace

cudaError_t LaunchChunkSelect(const ChunkSelectParams& p, cudaStream_t s) {
  if (p.n_items == 0 || p.max_chunks == 0) return cudaSuccess;
  const size_t smem = static_cast<size_t>(p.max_chunks) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(ChunkSelectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  RWKVX_KLAUNCH(ChunkSelectKernel, p.n_items, 256, smem, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
