// Device code shared by the RWKV-7 time-mix kernels, so that the separate kernels
// (rwkv7_prep.cu, rwkv7_post.cu) and the fused decode kernel (wkv7.cu, Wkv7DecodeKernel)
// run the same arithmetic in the same order and give the same bits. One warp owns one
// (row, head); lane l holds the head's columns 2l and 2l+1. Every lane of the warp must
// call these (the head's sums are warp shuffles).
#pragma once
#include <cuda_runtime.h>

#include "kernels/kernel_util.cuh"

namespace rwkvx::kernels::rwkv7 {

__device__ __forceinline__ float2 Load2(const float* p, size_t i) { return *reinterpret_cast<const float2*>(p + i); }

// The prep of two columns (see rwkv7_prep.cuh): a_in, k, v, w_in, vg, vf are this row's
// inputs (vg, vf unused on the first layer); a0, k_k, k_a, w0, v0 the layer's vectors.
struct PrepOut {
  float2 kk, a, k, v, w;
};
__device__ __forceinline__ PrepOut PrepPair(float2 a_in, float2 k, float2 v, float2 w_in, float2 vg, float2 vf,
                                            float2 a0, float2 k_k, float2 k_a, float2 w0, float2 v0, bool first_layer) {
  PrepOut o;
  o.a = make_float2(Sigmoidf(a0.x + a_in.x), Sigmoidf(a0.y + a_in.y));
  const float2 kk = make_float2(k.x * k_k.x, k.y * k_k.y);
  const float inv = 1.f / fmaxf(sqrtf(WarpSum(kk.x * kk.x + kk.y * kk.y)), 1e-12f);
  o.kk = make_float2(kk.x * inv, kk.y * inv);
  o.k = make_float2(k.x * (1.f + (o.a.x - 1.f) * k_a.x), k.y * (1.f + (o.a.y - 1.f) * k_a.y));
  o.v = first_layer ? v
                    : make_float2(v.x + (vf.x - v.x) * Sigmoidf(v0.x + vg.x), v.y + (vf.y - v.y) * Sigmoidf(v0.y + vg.y));
  o.w = make_float2(expf(-0.606531f * Sigmoidf(w0.x + w_in.x)), expf(-0.606531f * Sigmoidf(w0.y + w_in.y)));
  return o;
}

// The post of two columns (see rwkv7_post.cuh): GroupNorm of y over the head, the bonus
// sum_j r_j k_j r_k_j, times v, times g. Returns the two outputs before the half store.
__device__ __forceinline__ float2 PostPair(float2 y, float2 r, float2 k, float2 v, float2 g, float2 r_k, float2 ln_w,
                                           float2 ln_b, float eps) {
  const float mean = WarpSum(y.x + y.y) / 64.f;
  const float dx = y.x - mean, dy = y.y - mean;
  const float var = WarpSum(dx * dx + dy * dy) / 64.f;
  const float bonus = WarpSum(r.x * k.x * r_k.x + r.y * k.y * r_k.y);
  const float inv = 1.f / sqrtf(var + eps);
  return make_float2((dx * inv * ln_w.x + ln_b.x + bonus * v.x) * g.x, (dy * inv * ln_w.y + ln_b.y + bonus * v.y) * g.y);
}

}  // namespace rwkvx::kernels::rwkv7
