#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/rwkv7_post.cuh"

namespace rwkvx::kernels {
namespace {
// grid (rows, H), 64 threads.
__global__ void Rwkv7PostKernel(Rwkv7PostParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int c = blockIdx.y * 64 + threadIdx.x;
  const size_t o = static_cast<size_t>(blockIdx.x) * p.C + c;
  const float y = p.y[o];
  const float mean = BlockSum(y, scratch) / 64.f;
  const float d = y - mean;
  const float var = BlockSum(d * d, scratch) / 64.f;
  const float bonus = BlockSum(p.r[o] * p.k[o] * p.r_k[c], scratch);
  const float yn = d * (1.f / sqrtf(var + p.eps)) * p.ln_w[c] + p.ln_b[c];
  StoreHalf(p.out, o, (yn + bonus * p.v[o]) * p.g[o], p.bf16);
}
}  // namespace

cudaError_t LaunchRwkv7Post(const Rwkv7PostParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PostKernel, dim3(p.rows, p.H), 64, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
