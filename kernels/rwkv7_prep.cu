#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
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
  const float2 a_in = *reinterpret_cast<const float2*>(p.a + o);
  const float2 k = *reinterpret_cast<const float2*>(p.k + o);
  const float2 v = *reinterpret_cast<const float2*>(p.v + o);
  const float2 w_in = *reinterpret_cast<const float2*>(p.w + o);
  const float2 a0 = *reinterpret_cast<const float2*>(p.a0 + c);
  const float2 k_k = *reinterpret_cast<const float2*>(p.k_k + c);
  const float2 k_a = *reinterpret_cast<const float2*>(p.k_a + c);
  const float2 w0 = *reinterpret_cast<const float2*>(p.w0 + c);
  const float2 a = make_float2(Sigmoidf(a0.x + a_in.x), Sigmoidf(a0.y + a_in.y));
  const float2 kk = make_float2(k.x * k_k.x, k.y * k_k.y);
  const float inv = 1.f / fmaxf(sqrtf(WarpSum(kk.x * kk.x + kk.y * kk.y)), 1e-12f);
  *reinterpret_cast<float2*>(p.kk + o) = make_float2(kk.x * inv, kk.y * inv);
  *reinterpret_cast<float2*>(p.a + o) = a;
  *reinterpret_cast<float2*>(p.k + o) =
      make_float2(k.x * (1.f + (a.x - 1.f) * k_a.x), k.y * (1.f + (a.y - 1.f) * k_a.y));
  if (p.first_layer) {
    *reinterpret_cast<float2*>(p.v_first + o) = v;
  } else {
    const float2 vf = *reinterpret_cast<const float2*>(p.v_first + o);
    const float2 vg = *reinterpret_cast<const float2*>(p.vg + o);
    const float2 v0 = *reinterpret_cast<const float2*>(p.v0 + c);
    *reinterpret_cast<float2*>(p.v + o) = make_float2(v.x + (vf.x - v.x) * Sigmoidf(v0.x + vg.x),
                                                      v.y + (vf.y - v.y) * Sigmoidf(v0.y + vg.y));
  }
  *reinterpret_cast<float2*>(p.w + o) =
      make_float2(expf(-0.606531f * Sigmoidf(w0.x + w_in.x)), expf(-0.606531f * Sigmoidf(w0.y + w_in.y)));
}
}  // namespace

cudaError_t LaunchRwkv7Prep(const Rwkv7PrepParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Rwkv7PrepKernel, dim3(CeilDiv(static_cast<size_t>(p.rows) * p.H, kPairsPerBlock)), 32 * kPairsPerBlock, 0,
                s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
