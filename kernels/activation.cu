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
// Four elements a thread: one float4 load, one 8-byte store of four halves (n % 4 == 0,
// in 16-byte and out 8-byte aligned: every GEMM output of a step). Same values as above.
template <Act A>
__global__ void ActivationVec4Kernel(ActivationParams p) {
  PdlWait();
  PdlTrigger();
  const size_t n4 = p.n / 4;
  const float4* in = reinterpret_cast<const float4*>(p.in);
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 v = in[i];
    const float a = ApplyAct(A, v.x), b = ApplyAct(A, v.y), c = ApplyAct(A, v.z), d = ApplyAct(A, v.w);
    uint2 o;
    if (p.bf16) {
      const __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
      o.x = *reinterpret_cast<const unsigned*>(&lo);
      o.y = *reinterpret_cast<const unsigned*>(&hi);
    } else {
      const __half2 lo = __floats2half2_rn(a, b), hi = __floats2half2_rn(c, d);
      o.x = *reinterpret_cast<const unsigned*>(&lo);
      o.y = *reinterpret_cast<const unsigned*>(&hi);
    }
    reinterpret_cast<uint2*>(p.out)[i] = o;
  }
}

template <Act A>
cudaError_t LaunchAct(const ActivationParams& p, cudaStream_t s) {
  const bool vec = p.n % 4 == 0 && reinterpret_cast<size_t>(p.in) % 16 == 0 && reinterpret_cast<size_t>(p.out) % 8 == 0;
  const size_t per = vec ? 4 : 1;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((p.n / per + 255) / 256, 65536));
  if (vec) {
    RWKVX_KLAUNCH(ActivationVec4Kernel<A>, blocks, 256, 0, s, p);
  } else {
    RWKVX_KLAUNCH(ActivationKernel<A>, blocks, 256, 0, s, p);
  }
  return cudaSuccess;
}
}  // namespace

cudaError_t LaunchActivation(const ActivationParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  cudaError_t e = cudaSuccess;
  switch (p.act) {
    case Act::kNone: e = LaunchAct<Act::kNone>(p, s); break;
    case Act::kTanh: e = LaunchAct<Act::kTanh>(p, s); break;
    case Act::kSigmoid: e = LaunchAct<Act::kSigmoid>(p, s); break;
    case Act::kReluSq: e = LaunchAct<Act::kReluSq>(p, s); break;
  }
  if (e != cudaSuccess) return e;
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
