#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/rwkv7_post.cuh"

namespace rwkvx::kernels {
namespace {
// One warp per (row, head), two adjacent columns a lane (8-byte loads), the group's sums
// by shuffles: no shared memory, no barrier. kPairsPerBlock warps a block.
constexpr int kPairsPerBlock = 8;
__global__ void Rwkv7PostKernel(Rwkv7PostParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const long long pair = static_cast<long long>(blockIdx.x) * kPairsPerBlock + (threadIdx.x >> 5);
  if (pair >= static_cast<long long>(p.rows) * p.H) return;
  const int row = static_cast<int>(pair / p.H), h = static_cast<int>(pair % p.H);
  const int c = h * 64 + 2 * (threadIdx.x & 31);
  const size_t o = static_cast<size_t>(row) * p.C + c;
  const float2 y = *reinterpret_cast<const float2*>(p.y + o);
  const float2 r = *reinterpret_cast<const float2*>(p.r + o);
  const float2 k = *reinterpret_cast<const float2*>(p.k + o);
  const float2 v = *reinterpret_cast<const float2*>(p.v + o);
  const float2 g = *reinterpret_cast<const float2*>(p.g + o);
  const float2 r_k = *reinterpret_cast<const float2*>(p.r_k + c);
  const float2 ln_w = *reinterpret_cast<const float2*>(p.ln_w + c);
  const float2 ln_b = *reinterpret_cast<const float2*>(p.ln_b + c);
  const float mean = WarpSum(y.x + y.y) / 64.f;
  const float dx = y.x - mean, dy = y.y - mean;
  const float var = WarpSum(dx * dx + dy * dy) / 64.f;
  const float bonus = WarpSum(r.x * k.x * r_k.x + r.y * k.y * r_k.y);
  const float inv = 1.f / sqrtf(var + p.eps);
  StoreHalf(p.out, o, (dx * inv * ln_w.x + ln_b.x + bonus * v.x) * g.x, p.bf16);
  StoreHalf(p.out, o + 1, (dy * inv * ln_w.y + ln_b.y + bonus * v.y) * g.y, p.bf16);
}
}  // namespace

cudaError_t LaunchRwkv7Post(const Rwkv7PostParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PostKernel, dim3(CeilDiv(static_cast<size_t>(p.rows) * p.H, kPairsPerBlock)), 32 * kPairsPerBlock, 0,
                s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
