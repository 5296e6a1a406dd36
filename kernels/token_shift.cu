#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/token_shift.cuh"

namespace rwkvx::kernels {
namespace {
__global__ void TokenShiftMixKernel(TokenShiftParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int r = blockIdx.x;
  const int it = p.row_item[r];
  const bool first = r == p.item_row0[it];
  const float* u = p.u + static_cast<size_t>(r) * p.C;
  float* st = p.item_state[it] + p.state_off;
  const float* prev = first ? st : u - p.C;
  const size_t plane = static_cast<size_t>(p.rows) * p.C;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    const float x = u[c], d = prev[c] - x;
    for (int m = 0; m < p.n_mix; ++m)
      StoreHalf(p.out, m * plane + static_cast<size_t>(r) * p.C + c, x + d * p.mix[m * p.C + c], p.bf16);
  }
}
// Separate launch: the first row of an item reads the state that the last row replaces.
__global__ void TokenShiftSaveKernel(TokenShiftParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int it = blockIdx.x;
  const int last = p.item_row0[it] + p.item_len[it] - 1;
  const float* u = p.u + static_cast<size_t>(last) * p.C;
  float* st = p.item_state[it] + p.state_off;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) st[c] = u[c];
}
}  // namespace

cudaError_t LaunchTokenShift(const TokenShiftParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(TokenShiftMixKernel, p.rows, 256, 0, s, p);
  RWKVX_KLAUNCH(TokenShiftSaveKernel, p.items, 256, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
