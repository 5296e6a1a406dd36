#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/page_table.cuh"

namespace rwkvx::kernels {
namespace {
__global__ void PageTableUpdateKernel(PageTableUpdateParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < p.n) *p.dst[i] = p.val[i];
}
}  // namespace

cudaError_t LaunchPageTableUpdate(const PageTableUpdateParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  RWKVX_KLAUNCH(PageTableUpdateKernel, CeilDiv(p.n, 256), 256, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
