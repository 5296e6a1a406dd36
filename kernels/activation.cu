#include <algorithm>

#include "kernels/launch.cuh"
#include "kernels/activation.cuh"
#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels {
namespace {
template <Act A>
__global__ void ActivationKernel(ActivationParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    StoreHalf(p.out, i, ApplyAct(A, p.in[i]), p.bf16);
  }
}
}  // namespace

cudaError_t LaunchActivation(const ActivationParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((p.n + 255) / 256, 65536));
  switch (p.act) {
    case Act::kNone: RWKVX_KLAUNCH(ActivationKernel<Act::kNone>, blocks, 256, 0, s, p); break;
    case Act::kTanh: RWKVX_KLAUNCH(ActivationKernel<Act::kTanh>, blocks, 256, 0, s, p); break;
    case Act::kSigmoid: RWKVX_KLAUNCH(ActivationKernel<Act::kSigmoid>, blocks, 256, 0, s, p); break;
    case Act::kReluSq: RWKVX_KLAUNCH(ActivationKernel<Act::kReluSq>, blocks, 256, 0, s, p); break;
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
