#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/rwkv7_pair.cuh"
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
  using rwkv7::Load2;
  const float2 out = rwkv7::PostPair(Load2(p.y, o), Load2(p.r, o), Load2(p.k, o), Load2(p.v, o), Load2(p.g, o),
                                     Load2(p.r_k, c), Load2(p.ln_w, c), Load2(p.ln_b, c), p.eps);
  StoreHalf(p.out, o, out.x, p.bf16);
  StoreHalf(p.out, o + 1, out.y, p.bf16);
}
}  // namespace

cudaError_t LaunchRwkv7Post(const Rwkv7PostParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PostKernel, dim3(CeilDiv(static_cast<size_t>(p.rows) * p.H, kPairsPerBlock)), 32 * kPairsPerBlock, 0,
                s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
