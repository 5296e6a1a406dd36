#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/rwkv7_prep.cuh"

namespace rwkvx::kernels {
namespace {
// grid (rows, H), 64 threads: one head of one row.
__global__ void Rwkv7PrepKernel(Rwkv7PrepParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int c = blockIdx.y * 64 + threadIdx.x;
  const size_t o = static_cast<size_t>(blockIdx.x) * p.C + c;
  const float a = Sigmoidf(p.a0[c] + p.a[o]);
  const float k = p.k[o];
  const float kk = k * p.k_k[c];
  const float ss = BlockSum(kk * kk, scratch);
  p.kk[o] = kk / fmaxf(sqrtf(ss), 1e-12f);
  p.a[o] = a;
  p.k[o] = k * (1.f + (a - 1.f) * p.k_a[c]);
  const float v = p.v[o];
  if (p.first_layer) {
    p.v_first[o] = v;
  } else {
    p.v[o] = v + (p.v_first[o] - v) * Sigmoidf(p.v0[c] + p.vg[o]);
  }
  p.w[o] = expf(-0.606531f * Sigmoidf(p.w0[c] + p.w[o]));
}
}  // namespace

cudaError_t LaunchRwkv7Prep(const Rwkv7PrepParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PrepKernel, dim3(p.rows, p.H), 64, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
