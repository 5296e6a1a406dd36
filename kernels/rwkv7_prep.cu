#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/rwkv7_pair.cuh"
#include "kernels/rwkv7_prep.cuh"

namespace rwkvx::kernels {
namespace {
// One warp per (row, head), two adjacent columns a lane (8-byte loads), the head's sum
// of squares by shuffles: no shared memory, no barrier. kPairsPerBlock warps a block.
constexpr int kPairsPerBlock = 8;
__global__ void Rwkv7PrepKernel(Rwkv7PrepParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const long long pair = static_cast<long long>(blockIdx.x) * kPairsPerBlock + (threadIdx.x >> 5);
  if (pair >= static_cast<long long>(p.rows) * p.H) return;
  const int row = static_cast<int>(pair / p.H), h = static_cast<int>(pair % p.H);
  const int c = h * 64 + 2 * (threadIdx.x & 31);
  const size_t o = static_cast<size_t>(row) * p.C + c;
  using rwkv7::Load2;
  const bool first = p.first_layer;
  const float2 zero = make_float2(0.f, 0.f);
  const rwkv7::PrepOut r = rwkv7::PrepPair(Load2(p.a, o), Load2(p.k, o), Load2(p.v, o), Load2(p.w, o),
                                           first ? zero : Load2(p.vg, o), first ? zero : Load2(p.v_first, o),
                                           Load2(p.a0, c), Load2(p.k_k, c), Load2(p.k_a, c), Load2(p.w0, c),
                                           first ? zero : Load2(p.v0, c), first);
  *reinterpret_cast<float2*>(p.kk + o) = r.kk;
  *reinterpret_cast<float2*>(p.a + o) = r.a;
  *reinterpret_cast<float2*>(p.k + o) = r.k;
  *reinterpret_cast<float2*>(first ? p.v_first + o : p.v + o) = r.v;
  *reinterpret_cast<float2*>(p.w + o) = r.w;
}
}  // namespace

cudaError_t LaunchRwkv7Prep(const Rwkv7PrepParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PrepKernel, dim3(CeilDiv(static_cast<size_t>(p.rows) * p.H, kPairsPerBlock)), 32 * kPairsPerBlock, 0,
                s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
