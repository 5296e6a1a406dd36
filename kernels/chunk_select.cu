#include "kernels/launch.cuh"
#include "kernels/chunk_select.cuh"
#include "kernels/chunk_select_impl.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
// grid (items), 256 threads; shared: max_chunks floats of scores, then C floats of q. Warp w
// scores chunks w, w + 8, ... (chunk_select::Score: lane l sums channels l, l + 32, ... in
// that order, then a fixed shuffle tree); warp 0 then takes the top k one at a time (the
// highest score, the lowest index on a tie: chunk_select::TopK). Before session 22 the block
// scored the chunks one after another, a block-wide reduction each (16 us a call at 32K
// context on an H100, ncu: more than the attention over the chunks it picks); session 22's
// form still took 14.5 us a call at 32K context (H100, ncu,
// bench/engine/results/h100_2026-12-06_s25/call3): its channel loop ran with few loads in
// flight (PTX: unrolled by 4, q and the sums both from global memory, a division between).
// Since then q is staged in shared memory by the whole block and each lane issues kBatch
// loads of q and of the chunk sum before using the first: the same products summed in the
// same order (the same scores, the same selection). The decode attention kernel runs the
// same two functions itself in steps of few sessions (AttnDecodeParams::select).
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
    const float d = chunk_select::Score(qs, it.sums.Row(c, p.C), p.C, p.chunk, lane);
    if (lane == 0) score[c] = d;
  }
  __syncthreads();
  if (warp == 0) chunk_select::TopK(score, nchunks, p.topk, p.selected + blockIdx.x * p.topk, lane);
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
