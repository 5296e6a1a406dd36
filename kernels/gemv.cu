#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/launch.cuh"
#include "kernels/gemv.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/layernorm_row.cuh"

namespace rwkvx::kernels {
namespace {

// bar.sync on barrier `id` (1..15; 0 is __syncthreads) for `threads` threads (a multiple of 32).
__device__ __forceinline__ void NamedBarrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void Unpack8(const uint4& u, bool bf16, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (bf16) {
      const __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&w[k]);
      const float2 v = __bfloat1622float2(h);
      f[2 * k] = v.x;
      f[2 * k + 1] = v.y;
    } else {
      const __half2 h = *reinterpret_cast<const __half2*>(&w[k]);
      const float2 v = __half22float2(h);
      f[2 * k] = v.x;
      f[2 * k + 1] = v.y;
    }
  }
}

// One output row's dot products over half weights: 8 weights a lane per iteration.
// With GemvParams::ksplit = K > 1 the row's loads are runs of 32 (a load a lane), and warp
// `part` of the row's K takes the runs part, part + K, part + 2K, ...
template <int ROWS, int KS>
__device__ __forceinline__ void DotHalf(const GemvParams& p, const void* x, int o, int lane, int part, bool bf16,
                                        float (&acc)[ROWS]) {
  const uint4* w = reinterpret_cast<const uint4*>(static_cast<const char*>(p.w) + static_cast<size_t>(o) * p.in * 2);
  const int n8 = p.in / 8;
#pragma unroll 4  // several 16-byte weight loads in flight per lane (same summation order)
  for (int i = lane + 32 * part; i < n8; i += 32 * KS) {
    float wf[8];
    Unpack8(w[i], bf16, wf);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const uint4 xv = reinterpret_cast<const uint4*>(static_cast<const char*>(x) + static_cast<size_t>(r) * p.in * 2)[i];
      float xf[8];
      Unpack8(xv, bf16, xf);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[r] += wf[k] * xf[k];
    }
  }
}

// 16 E4M3 weights (one 16-byte load) to float: exact (every E4M3 value is an fp16 value).
__device__ __forceinline__ void Unpack16Fp8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const __nv_fp8x2_storage_t pair = static_cast<__nv_fp8x2_storage_t>((w[k / 2] >> (16 * (k % 2))) & 0xffffu);
    const float2 v = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
    f[2 * k] = v.x;
    f[2 * k + 1] = v.y;
  }
}

// 16 int8 codes to float (exact).
__device__ __forceinline__ void Unpack16Int8(const uint4& u, float* f) {
  Int8x4ToFloat(u.x, f);
  Int8x4ToFloat(u.y, f + 4);
  Int8x4ToFloat(u.z, f + 8);
  Int8x4ToFloat(u.w, f + 12);
}

// The 8-bit form of the loop below (kInt8: int8 codes, else E4M3): 16 weights a lane per
// iteration, the two 8-value halves of x for each.
template <int ROWS, bool kInt8, int KS>
__device__ __forceinline__ void Dot8(const GemvParams& p, const void* x, int o, int lane, int part, bool bf16,
                                     float (&acc)[ROWS]) {
  const uint4* w = reinterpret_cast<const uint4*>(static_cast<const char*>(p.w) + static_cast<size_t>(o) * p.in);
  const int n16 = p.in / 16;
#pragma unroll 4
  for (int i = lane + 32 * part; i < n16; i += 32 * KS) {
    float wf[16];
    if (kInt8)
      Unpack16Int8(w[i], wf);
    else
      Unpack16Fp8(w[i], wf);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const uint4* xr = reinterpret_cast<const uint4*>(static_cast<const char*>(x) + static_cast<size_t>(r) * p.in * 2);
      float xf[8];
      Unpack8(xr[2 * i], bf16, xf);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[r] += wf[k] * xf[k];
      Unpack8(xr[2 * i + 1], bf16, xf);
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[r] += wf[8 + k] * xf[k];
    }
  }
}

template <int ROWS, bool kAny8, int KS>
__device__ __forceinline__ void Dots(const GemvParams& p, const void* x, int o, int lane, int part, bool bf16,
                                     float (&acc)[ROWS]) {
  if (kAny8 && p.w_scale) {  // warp-uniform: one output row per warp
    if (p.w_int8)
      Dot8<ROWS, true, KS>(p, x, o, lane, part, bf16, acc);
    else
      Dot8<ROWS, false, KS>(p, x, o, lane, part, bf16, acc);
  } else {
    DotHalf<ROWS, KS>(p, x, o, lane, part, bf16, acc);
  }
}

// Output row o of job p (this warp; with ksplit = K > 1 this warp is part `part` of the K
// warps of slot `slot`, all of them calling): the dot products over x's rows, then the
// stores. The K warps' sums meet in red and part 0 adds them in part order (a fixed order:
// the same bits every run); K = 1 is the plain warp sum, with neither barrier.
// kOld: lane 0's y[r, o] for an accumulating job was loaded before the PDL wait, into y_old
// (GemvGroupParams::y_early). kReuse: the caller calls again with the same red (the folded
// form's loop): the K warps meet once more after part 0's reads.
template <int ROWS, bool kAny8, int K, bool kOld = false, bool kReuse = false>
__device__ __forceinline__ void GemvOut(const GemvParams& p, const void* x, int o, int lane, int part, int slot,
                                        bool bf16, float (*red)[kGemvMaxRows], const float (&y_old)[ROWS] = {}) {
  float acc[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) acc[r] = 0.f;
  Dots<ROWS, kAny8, K>(p, x, o, lane, part, bf16, acc);
  float sum[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) sum[r] = WarpSum(acc[r]);
  if constexpr (K > 1) {
    const int warp = slot * K + part;
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < ROWS; ++r) red[warp][r] = sum[r];
    }
    NamedBarrier(1 + slot, 32 * K);
    if (part == 0 && lane == 0) {
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        float t = red[warp][r];
        for (int q = 1; q < K; ++q) t += red[warp + q][r];
        sum[r] = t;
      }
    }
    if constexpr (kReuse) NamedBarrier(1 + slot, 32 * K);
    if (part != 0) return;
  }
  const float scale = kAny8 && p.w_scale ? p.w_scale[o] : 1.f;  // an 8-bit row's sum, scaled once
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const float v = kAny8 ? sum[r] * scale : sum[r];
    if (lane == 0) {
      const size_t idx = static_cast<size_t>(r) * p.out + o;
      if (p.y)
        p.y[idx] = p.accumulate ? (kOld ? y_old[r] : p.y[idx]) + v : v;
      else
        StoreHalf(p.y_half, idx, ApplyAct(p.act, v), bf16);
    }
  }
}

// The folded LayerNorm (GemvFold): rows 0..ROWS-1 normalized with the LayerNorm kernel's
// arithmetic (kernels/layernorm_row.cuh; the same expressions as LayerNormRegsKernel for
// y and the mixes), this job's x (y itself or mix m) stored as halves into xs [ROWS][C];
// block 0 writes y. All 256 threads.
template <int ROWS>
__device__ void FoldPrologue(const GemvFold& f, int mix, bool bf16, void* xs, float* scratch, bool write_y) {
  constexpr int kPer = kGemvFoldMaxC / kLnThreads;
  for (int r = 0; r < ROWS; ++r) {
    const float* x = f.x + static_cast<size_t>(r) * f.C;
    float xv[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = threadIdx.x + i * kLnThreads;
      xv[i] = c < f.C ? x[c] : 0.f;
    }
    float mean, inv;
    LnRowStats<kPer>(xv, f.C, f.eps, scratch, &mean, &inv);
    const float* st = mix >= 0 ? f.item_state[r] + f.state_off : nullptr;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = threadIdx.x + i * kLnThreads;
      if (c >= f.C) break;
      const float y = (xv[i] - mean) * inv * __ldg(f.w + c) + __ldg(f.b + c);
      const size_t o = static_cast<size_t>(r) * f.C + c;
      if (st) {
        const float d = st[c] - y;
        StoreHalf(xs, o, y + d * __ldg(f.mix + static_cast<size_t>(mix) * f.C + c), bf16);
      } else {
        StoreHalf(xs, o, y, bf16);
      }
      if (write_y) f.y_out[o] = y;
    }
  }
}

// 256 threads = 8 warps, one output row each. Blocks are laid out job after job
// (ceil(out / 8) blocks per job). kAny8: some job has 8-bit weights (a separate
// instantiation, so that groups of half weights compile exactly as without the 8-bit path).
// kMode: 0 plain; 1 the folded LayerNorm first (GemvFold: x from shared memory); 2 the
// state copy first (GemvSave, block 0); 3 plain with the accumulating jobs' old y loaded
// before the PDL wait (GemvGroupParams::y_early).
//
// GemvGroupParams::prefetch_w: before the PDL wait (the job's place comes from the kernel's
// parameters alone, no memory), each warp issues L2 prefetches of its weight rows, one
// 128-byte line a lane at a time; weights are never written by a kernel, so reading them
// before the wait is safe. Everything else waits as in every kernel here.
template <int ROWS, bool kAny8, int kMode, int K>
__global__ void __launch_bounds__(256) GemvKernel(GemvGroupParams gp) {
  const int lane = threadIdx.x & 31;
  // Output rows a warp: one, or with the fold GemvFold::outs_per_warp (fewer blocks, each
  // normalizing the rows once for more outputs).
  const int nout = kMode == 1 ? gp.fold.outs_per_warp : 1;
  int b = blockIdx.x, j = 0;
  for (; j < gp.n_jobs - 1; ++j) {
    const int nb = (gp.job[j].out * K + 8 * nout - 1) / (8 * nout);
    if (b < nb) break;
    b -= nb;
  }
  const GemvParams& p = gp.job[j];
  // GemvParams::ksplit = K (every job of the launch): the block's 8 warps are 8 / K slots of K
  // warps, a slot per output row.
  constexpr int per_block = 8 / K;
  const int part = (threadIdx.x >> 5) % K, slot = (threadIdx.x >> 5) / K;
  if (gp.prefetch_w) {
    const size_t row_bytes = static_cast<size_t>(p.in) * (kAny8 && p.w_scale ? 1 : 2);
    for (int k = 0; k < nout; ++k) {
      const int o = (b * nout + k) * per_block + slot;
      if (o >= p.out) break;
      const char* row = static_cast<const char*>(p.w) + static_cast<size_t>(o) * row_bytes;
      for (size_t off = static_cast<size_t>(lane + 32 * part) * 128; off < row_bytes; off += 32 * 128 * K)
        PrefetchL2(row + off);
    }
  }
  // kMode 3 (GemvGroupParams::y_early): lane 0 loads the sums' old values (the residual)
  // before the wait.
  float y_old[ROWS] = {};
  const int o_plain = b * per_block + slot;  // this warp's output row (kMode 0, 2, 3)
  const bool have_old = kMode == 3 && p.accumulate && p.y;  // warp-uniform
  if (have_old && lane == 0 && part == 0 && o_plain < p.out) {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) y_old[r] = p.y[static_cast<size_t>(r) * p.out + o_plain];
  }
  PdlWait();  // before any other memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float red[K > 1 ? 8 : 1][kGemvMaxRows];  // the split rows' warp sums (K > 1)
  const bool bf16 = gp.job[0].bf16;
  const void* x = p.x;
  if constexpr (kMode == 1) {
    __shared__ __align__(16) unsigned short xs[ROWS * kGemvFoldMaxC];
    __shared__ float scratch[33];
    FoldPrologue<ROWS>(gp.fold, p.fold_mix, bf16, xs, scratch, blockIdx.x == 0);
    __syncthreads();
    x = xs;
  }
  if constexpr (kMode == 2) {
    if (blockIdx.x == 0) {
      const GemvSave& sv = gp.save;
      for (int r = 0; r < ROWS; ++r) {
        float* st = sv.item_state[r] + sv.state_off;
        for (int c = threadIdx.x; c < sv.C; c += blockDim.x) st[c] = sv.src[static_cast<size_t>(r) * sv.C + c];
      }
    }
  }
  // A slot's K warps share its row, so they return (and meet at its barrier) together.
  if constexpr (kMode == 1) {
    for (int k = 0; k < nout; ++k) {
      const int o = (b * nout + k) * per_block + slot;
      if (o >= p.out) return;
      GemvOut<ROWS, kAny8, K, false, true>(p, x, o, lane, part, slot, bf16, red);
    }
  } else {
    if (o_plain >= p.out) return;
    if (have_old)
      GemvOut<ROWS, kAny8, K, true>(p, x, o_plain, lane, part, slot, bf16, red, y_old);
    else
      GemvOut<ROWS, kAny8, K>(p, x, o_plain, lane, part, slot, bf16, red);
  }
}

template <bool kAny8, int kMode, int K>
cudaError_t LaunchRows(const GemvGroupParams& p, int rows, unsigned blocks, cudaStream_t s) {
  switch (rows) {
    case 1: RWKVX_KLAUNCH((GemvKernel<1, kAny8, kMode, K>), blocks, 256, 0, s, p); break;
    case 2: RWKVX_KLAUNCH((GemvKernel<2, kAny8, kMode, K>), blocks, 256, 0, s, p); break;
    case 3: RWKVX_KLAUNCH((GemvKernel<3, kAny8, kMode, K>), blocks, 256, 0, s, p); break;
    default: RWKVX_KLAUNCH((GemvKernel<4, kAny8, kMode, K>), blocks, 256, 0, s, p); break;
  }
  return cudaGetLastError();
}

template <int kMode>
cudaError_t LaunchMode(const GemvGroupParams& p, bool any8, int rows, int k, unsigned blocks, cudaStream_t s) {
  switch (k) {
    case 1: return any8 ? LaunchRows<true, kMode, 1>(p, rows, blocks, s) : LaunchRows<false, kMode, 1>(p, rows, blocks, s);
    case 2: return any8 ? LaunchRows<true, kMode, 2>(p, rows, blocks, s) : LaunchRows<false, kMode, 2>(p, rows, blocks, s);
    default: return any8 ? LaunchRows<true, kMode, 4>(p, rows, blocks, s) : LaunchRows<false, kMode, 4>(p, rows, blocks, s);
  }
}

// One launch of jobs that share their ksplit (checked by the caller).
cudaError_t LaunchUniform(const GemvGroupParams& p, cudaStream_t s) {
  const bool fold = p.fold.x != nullptr, save = p.save.src != nullptr;
  const int rows = p.job[0].rows, k = p.job[0].ksplit;
  unsigned blocks = 0;
  bool any8 = false;
  for (int j = 0; j < p.n_jobs; ++j) {
    blocks += CeilDiv(p.job[j].out * k, 8 * (fold ? p.fold.outs_per_warp : 1));
    any8 = any8 || p.job[j].w_scale;
  }
  if (fold) return LaunchMode<1>(p, any8, rows, k, blocks, s);
  if (save) return LaunchMode<2>(p, any8, rows, k, blocks, s);
  if (p.y_early) return LaunchMode<3>(p, any8, rows, k, blocks, s);
  return LaunchMode<0>(p, any8, rows, k, blocks, s);
}
}  // namespace

cudaError_t LaunchGemvGroup(const GemvGroupParams& p, cudaStream_t s) {
  if (p.n_jobs < 1 || p.n_jobs > kGemvMaxJobs) return cudaErrorInvalidValue;
  const int rows = p.job[0].rows;
  if (rows < 1 || rows > kGemvMaxRows) return cudaErrorInvalidValue;
  const bool fold = p.fold.x != nullptr, save = p.save.src != nullptr;
  if (fold && (save || p.fold.C < 1 || p.fold.C > kGemvFoldMaxC || !p.fold.w || !p.fold.b || !p.fold.y_out ||
               p.fold.outs_per_warp < 1 || p.fold.outs_per_warp > 16))
    return cudaErrorInvalidValue;
  if (save && (!p.save.item_state || p.save.C < 1)) return cudaErrorInvalidValue;
  bool uniform = true;
  for (int j = 0; j < p.n_jobs; ++j) {
    const GemvParams& q = p.job[j];
    if (q.rows != rows || q.bf16 != p.job[0].bf16 || q.in % (q.w_scale ? 16 : 8) != 0 || q.out < 1 ||
        (!q.y && !q.y_half) || (q.ksplit != 1 && q.ksplit != 2 && q.ksplit != 4))
      return cudaErrorInvalidValue;
    if (fold && (q.in != p.fold.C || q.fold_mix >= 6 || (q.fold_mix >= 0 && (!p.fold.mix || !p.fold.item_state))))
      return cudaErrorInvalidValue;
    uniform = uniform && q.ksplit == p.job[0].ksplit;
  }
  if (uniform) return LaunchUniform(p, s);
  // Jobs of several splits: a launch per split, in the order 1, 2, 4 (the products are
  // independent; each folds again, the same y; the state copy goes with the first).
  bool first = true;
  for (int k : {1, 2, 4}) {
    GemvGroupParams g = p;
    g.n_jobs = 0;
    for (int j = 0; j < p.n_jobs; ++j)
      if (p.job[j].ksplit == k) g.job[g.n_jobs++] = p.job[j];
    if (g.n_jobs == 0) continue;
    if (!first) g.save = {};
    first = false;
    const cudaError_t e = LaunchUniform(g, s);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t s) {
  GemvGroupParams g;
  g.job[0] = p;
  g.n_jobs = 1;
  return LaunchGemvGroup(g, s);
}

}  // namespace rwkvx::kernels
