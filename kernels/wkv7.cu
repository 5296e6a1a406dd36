#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = 64;

// grid (H, items), 64 threads; thread i owns row i of the head's state in registers.
__global__ void __launch_bounds__(64) Wkv7Kernel(Wkv7Params p) {
  __shared__ float sr[N], sw[N], sk[N], snk[N], sb[N];
  const int h = blockIdx.x, it = blockIdx.y, i = threadIdx.x;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[N];
#pragma unroll
  for (int j = 0; j < N; ++j) s[j] = S[j * N + i];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  for (int t = 0; t < len; ++t) {
    const size_t o = static_cast<size_t>(row0 + t) * p.C + h * N + i;
    const float kk = p.kk[o];
    sr[i] = p.r[o];
    sw[i] = p.w[o];
    sk[i] = p.k[o];
    snk[i] = -kk;
    sb[i] = kk * p.a[o];
    const float vi = p.v[o];
    __syncthreads();
    float sa = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) sa += s[j] * snk[j];
    float y = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      s[j] = s[j] * sw[j] + sa * sb[j] + vi * sk[j];
      y += s[j] * sr[j];
    }
    p.y[o] = y;
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < N; ++j) S[j * N + i] = s[j];
}
}  // namespace

cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s) {
  if (p.items == 0) return cudaSuccess;
  Wkv7Kernel<<<dim3(p.H, p.items), N, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
