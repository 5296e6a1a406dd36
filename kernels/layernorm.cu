#include "kernels/kernel_util.cuh"
#include "kernels/layernorm.cuh"

namespace rwkvx::kernels {
namespace {
// One block per row; two passes over the row (mean, then centred variance) like the
// float32 reference, so the result does not suffer from E[x^2]-E[x]^2 cancellation.
__global__ void LayerNormKernel(LayerNormParams p) {
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const int src = p.row_index ? p.row_index[r] : r;
  const float* x = p.x + static_cast<size_t>(src) * p.C;
  float s = 0.f;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) s += x[c];
  const float mean = BlockSum(s, scratch) / p.C;
  float v = 0.f;
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    const float d = x[c] - mean;
    v += d * d;
  }
  const float var = BlockSum(v, scratch) / p.C;
  const float inv = 1.f / sqrtf(var + p.eps);
  for (int c = threadIdx.x; c < p.C; c += blockDim.x) {
    const float y = (x[c] - mean) * inv * p.w[c] + p.b[c];
    const size_t o = static_cast<size_t>(r) * p.C + c;
    if (p.out) p.out[o] = y;
    if (p.out_half) StoreHalf(p.out_half, o, y, p.bf16);
    if (p.mix) {
      float* st = p.item_state[r] + p.state_off;
      const float d = st[c] - y;
      const size_t plane = static_cast<size_t>(p.rows) * p.C;
      for (int m = 0; m < p.n_mix; ++m) StoreHalf(p.mix_out, m * plane + o, y + d * p.mix[m * p.C + c], p.bf16);
      st[c] = y;
    }
  }
}
}  // namespace

cudaError_t LaunchLayerNorm(const LayerNormParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  if (p.mix && (p.row_index || !p.item_state || !p.mix_out || p.n_mix < 1)) return cudaErrorInvalidValue;
  LayerNormKernel<<<p.rows, 256, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
