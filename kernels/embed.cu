#include "kernels/launch.cuh"
#include "kernels/embed.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
__global__ void EmbedKernel(EmbedParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int r = blockIdx.x;
  const float* src = p.emb + static_cast<size_t>(p.tokens[r]) * p.C;
  float* dst = p.x + static_cast<size_t>(r) * p.C;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) dst[c] = src[c];
}
}  // namespace

cudaError_t LaunchEmbed(const EmbedParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(EmbedKernel, p.rows, 256, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
