#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/layernorm_row.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int kThreads = 256;
constexpr int kMaxMix = 6;  // RWKV-7 time mixing has six (r, w, k, v, a, g)
constexpr int kSliceMaxRows = 16;  // LayerNormSliceKernel: decode steps of up to this many rows

// The input row of block row r (through row_index where given).
__device__ __forceinline__ const float* RowIn(const LayerNormParams& p, int r) {
  return p.x + static_cast<size_t>(p.row_index ? p.row_index[r] : r) * p.C;
}

// The row's mean and 1 / sqrt(var + eps) from this thread's columns threadIdx.x + i *
// kThreads (in that order; two passes, like the float32 reference, so no E[x^2]-E[x]^2
// cancellation). Shared by the register and row kernels and the GEMV's folded LayerNorm
// (kernels/layernorm_row.cuh): the same bits.
template <int kPer>
__device__ __forceinline__ void RowStats(const float (&xv)[kPer], const LayerNormParams& p, float* scratch,
                                         float* mean_out, float* inv_out) {
  static_assert(kThreads == kLnThreads, "one column layout");
  LnRowStats<kPer>(xv, p.C, p.eps, scratch, mean_out, inv_out);
}

// The register kernels' stores (plain and early forms): each of the thread's columns
// normalized, then out / out_half and, with the mixes, the mixed halves and the new saved
// vector.
template <int kPer>
__device__ __forceinline__ void RegsOut(const LayerNormParams& p, int r, const float (&xv)[kPer],
                                        const float (&wv)[kPer], const float (&bv)[kPer], const float (&sv)[kPer],
                                        const float (&mv)[kPer][kMaxMix], float mean, float inv, float* st) {
  const size_t plane = static_cast<size_t>(p.rows) * p.C;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= p.C) continue;
    const float y = (xv[i] - mean) * inv * wv[i] + bv[i];
    const size_t o = static_cast<size_t>(r) * p.C + c;
    if (p.out) p.out[o] = y;
    if (p.out_half) StoreHalf(p.out_half, o, y, p.bf16);
    if (st) {
      const float d = sv[i] - y;
#pragma unroll
      for (int m = 0; m < kMaxMix; ++m)
        if (m < p.n_mix) StoreHalf(p.mix_out, m * plane + o, y + d * mv[i][m], p.bf16);
      st[c] = y;
    }
  }
}

// The slice kernels' rest (plain and early forms), once the slice's operands are loaded:
// the row x for the statistics, then column c's normalized value and its stores.
template <int kPer>
__device__ __forceinline__ void SliceRowOut(const LayerNormParams& p, int r, int c, const float* x, float* scratch,
                                            float wv, float bv, float sv, const float (&mv)[kMaxMix], int n_mix,
                                            float* st) {
  const bool in = c < p.C;
  float xv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int cc = threadIdx.x + i * kThreads;
    xv[i] = cc < p.C ? x[cc] : 0.f;
  }
  const float xc = in ? x[c] : 0.f;  // = xv[blockIdx.y], without a dynamically indexed array
  float mean, inv;
  RowStats<kPer>(xv, p, scratch, &mean, &inv);
  if (!in) return;
  const float y = (xc - mean) * inv * wv + bv;
  const size_t o = static_cast<size_t>(r) * p.C + c;
  if (p.out) p.out[o] = y;
  if (p.out_half) StoreHalf(p.out_half, o, y, p.bf16);
  if (st) {
    const float d = sv - y;
    const size_t plane = static_cast<size_t>(p.rows) * p.C;
#pragma unroll
    for (int m = 0; m < kMaxMix; ++m)
      if (m < n_mix) StoreHalf(p.mix_out, m * plane + o, y + d * mv[m], p.bf16);
    st[c] = y;
  }
}

// One block per row; two passes over the row (mean, then centred variance) like the
// float32 reference, so the result does not suffer from E[x^2]-E[x]^2 cancellation.
// Each thread owns the columns c = threadIdx.x + i * kThreads, i < kPer, and sums them in
// that order (the same order as the generic kernel below: identical bits).
//
// Decode runs this with one row per item, i.e. one block: its time is a chain of memory
// round trips, not bandwidth. So every load the row needs (x, w, b, the item's previous
// vector and each mix vector) is issued at the start, before the first reduction and
// before any store, instead of one dependent load after another (the stores to mix_out and
// the item state could alias the inputs, which made the compiler serialize them).
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormRegsKernel(LayerNormParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const float* x = RowIn(p, r);  // out may alias it: read first
  const float* __restrict__ w = p.w;
  const float* __restrict__ b = p.b;
  const float* __restrict__ mix = p.mix;
  float* st = p.mix ? p.item_state[r] + p.state_off : nullptr;
  float xv[kPer], wv[kPer], bv[kPer], sv[kPer];
  float mv[kPer][kMaxMix];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const bool in = c < p.C;
    xv[i] = in ? x[c] : 0.f;
    wv[i] = in ? __ldg(w + c) : 0.f;
    bv[i] = in ? __ldg(b + c) : 0.f;
    sv[i] = in && st ? st[c] : 0.f;
#pragma unroll
    for (int m = 0; m < kMaxMix; ++m) mv[i][m] = in && m < p.n_mix ? __ldg(mix + m * p.C + c) : 0.f;
  }
  float mean, inv;
  RowStats<kPer>(xv, p, scratch, &mean, &inv);
  RegsOut<kPer>(p, r, xv, wv, bv, sv, mv, mean, inv, st);
}

// The few rows of a decode step, each row's columns spread over `per` blocks (gridDim.y):
// block (r, i) reads the whole row for the statistics (the same threads, columns and
// order as the kernels around it: the same mean and inverse, bit for bit) but only the
// column slice i * kThreads + threadIdx.x of the weights, the saved vector and the mixes,
// and writes only that slice. One block per row left one SM to load the row, its weights,
// its saved vector and six mixes (~100 KB at 2560 columns) and to write ~40 KB:
// 6.6 us a launch on an H200 (3.6B, one session, 81 launches a token). Needs out not to
// overlap x (another block may still be reading the row).
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormSliceKernel(LayerNormParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const int c = threadIdx.x + blockIdx.y * kThreads;  // this thread's one output column
  const bool in = c < p.C;
  const float* x = RowIn(p, r);
  float* st = p.mix ? p.item_state[r] + p.state_off : nullptr;
  const int n_mix = st ? p.n_mix : 0;
  // The slice's operands first: their latency hides behind the row's loads and reductions.
  const float wv = in ? __ldg(p.w + c) : 0.f, bv = in ? __ldg(p.b + c) : 0.f;
  const float sv = in && st ? st[c] : 0.f;
  float mv[kMaxMix];
#pragma unroll
  for (int m = 0; m < kMaxMix; ++m) mv[m] = in && m < n_mix ? __ldg(p.mix + m * p.C + c) : 0.f;
  SliceRowOut<kPer>(p, r, c, x, scratch, wv, bv, sv, mv, n_mix, st);
}

// LayerNormRegsKernel with its reads before the PDL wait (LayerNormParams::early): the
// weights, the mixes and the item's saved vector, then the wait, the row and the same
// arithmetic (identical bits). The saved vector was last written by this launch site a
// step ago; the kernel right before never writes it (layernorm.cuh).
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormRegsEarlyKernel(LayerNormParams p) {
  const float* __restrict__ w = p.w;
  const float* __restrict__ b = p.b;
  const float* __restrict__ mix = p.mix;
  const int r = blockIdx.x;
  float xv[kPer], wv[kPer], bv[kPer], sv[kPer];
  float mv[kPer][kMaxMix];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const bool in = c < p.C;
    wv[i] = in ? __ldg(w + c) : 0.f;
    bv[i] = in ? __ldg(b + c) : 0.f;
#pragma unroll
    for (int m = 0; m < kMaxMix; ++m) mv[i][m] = in && mix && m < p.n_mix ? __ldg(mix + m * p.C + c) : 0.f;
  }
  float* st = p.mix ? p.item_state[r] + p.state_off : nullptr;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    sv[i] = c < p.C && st ? st[c] : 0.f;
  }
  PdlWait();  // before any other memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const float* x = RowIn(p, r);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    xv[i] = c < p.C ? x[c] : 0.f;
  }
  float mean, inv;
  RowStats<kPer>(xv, p, scratch, &mean, &inv);
  RegsOut<kPer>(p, r, xv, wv, bv, sv, mv, mean, inv, st);
}

// LayerNormSliceKernel with the slice's weights, mixes and saved vector read before the
// PDL wait (LayerNormParams::early): the same arithmetic, identical bits.
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormSliceEarlyKernel(LayerNormParams p) {
  const int r = blockIdx.x;
  const int c = threadIdx.x + blockIdx.y * kThreads;  // this thread's one output column
  const bool in = c < p.C;
  // The slice's weights before the PDL wait (no kernel writes them: kernels/launch.cuh), so
  // that their latency overlaps the kernel before; a mix needs the item state (p.mix set).
  const int n_mix = p.mix ? p.n_mix : 0;
  const float wv = in ? __ldg(p.w + c) : 0.f, bv = in ? __ldg(p.b + c) : 0.f;
  float mv[kMaxMix];
#pragma unroll
  for (int m = 0; m < kMaxMix; ++m) mv[m] = in && m < n_mix ? __ldg(p.mix + m * p.C + c) : 0.f;
  // The item's saved vector as well (last written by this launch site a step ago).
  float* st = p.mix ? p.item_state[r] + p.state_off : nullptr;
  const float sv = in && st ? st[c] : 0.f;
  PdlWait();  // before any other memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const float* x = RowIn(p, r);
  SliceRowOut<kPer>(p, r, c, x, scratch, wv, bv, sv, mv, n_mix, st);
}

// The thread's columns c = threadIdx.x + i * kThreads in order, each handed to
// each(i, c, mv) with the n_mix mix vectors' values at c in mv, loaded one column ahead of
// the call that stores with them (the stores could alias them for all the compiler knows,
// which serialized a load after each store: 6 dependent round trips a column).
template <int kPer, class Each>
__device__ __forceinline__ void ColumnsWithMixes(const LayerNormParams& p, int n_mix, Each each) {
  auto load_mix = [&](int i, float (&mv)[kMaxMix]) {
    const int c = threadIdx.x + i * kThreads;
#pragma unroll
    for (int m = 0; m < kMaxMix; ++m) mv[m] = m < n_mix && c < p.C ? __ldg(p.mix + m * p.C + c) : 0.f;
  };
  float cur[kMaxMix];
  load_mix(0, cur);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    if (c >= p.C) break;  // columns only grow with i
    float next[kMaxMix];
    if (i + 1 < kPer) load_mix(i + 1, next);
    each(i, c, cur);
    if (i + 1 < kPer) {
#pragma unroll
      for (int m = 0; m < kMaxMix; ++m) cur[m] = next[m];
    }
  }
}

// Many rows of up to kThreads * kPer columns (a 3.6B step of hundreds of rows): the row,
// its weights and the item's previous vector in registers, loaded before the reductions
// so that their latency hides behind them; the mix vectors (the same for every row: cache
// hits) one column ahead of the stores that use them. Before, each mix was loaded after
// the previous store (the stores could alias it for all the compiler knew): 6 dependent
// round trips a column, 17.5 us a launch for 256 rows of 2560 on an H200. The register
// kernel above also holds every mix (160-230 registers at kPer 10-16, one block per SM).
// The same columns per thread and the same arithmetic as the kernels around it:
// identical bits.
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormRowKernel(LayerNormParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const float* x = RowIn(p, r);  // out may alias it: read first
  float* st = p.mix ? p.item_state[r] + p.state_off : nullptr;
  float xv[kPer], wv[kPer], bv[kPer], sv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const bool in = c < p.C;
    xv[i] = in ? x[c] : 0.f;
    wv[i] = in ? __ldg(p.w + c) : 0.f;
    bv[i] = in ? __ldg(p.b + c) : 0.f;
    sv[i] = in && st ? st[c] : 0.f;
  }
  float mean, inv;
  RowStats<kPer>(xv, p, scratch, &mean, &inv);
  const size_t plane = static_cast<size_t>(p.rows) * p.C;
  const int n_mix = st ? p.n_mix : 0;
  ColumnsWithMixes<kPer>(p, n_mix, [&](int i, int c, const float (&mv)[kMaxMix]) {
    const float y = (xv[i] - mean) * inv * wv[i] + bv[i];
    const size_t o = static_cast<size_t>(r) * p.C + c;
    if (p.out) p.out[o] = y;
    if (p.out_half) StoreHalf(p.out_half, o, y, p.bf16);
    if (st) {
      const float d = sv[i] - y;
#pragma unroll
      for (int m = 0; m < kMaxMix; ++m)
        if (m < n_mix) StoreHalf(p.mix_out, m * plane + o, y + d * mv[m], p.bf16);
      st[c] = y;
    }
  });
}

// The normed columns of row r (the thread's columns threadIdx.x + i * kThreads), with the
// statistics and arithmetic of the kernels above: the same bits as row r's own block.
// Contains __syncthreads (block-uniform calls only).
template <int kPer>
__device__ __forceinline__ void NormedRow(const LayerNormParams& p, int r, const float (&wv)[kPer],
                                          const float (&bv)[kPer], float* scratch, float (&y)[kPer]) {
  const float* x = p.x + static_cast<size_t>(r) * p.C;
  float xv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    xv[i] = c < p.C ? x[c] : 0.f;
  }
  float mean, inv;
  RowStats<kPer>(xv, p, scratch, &mean, &inv);
#pragma unroll
  for (int i = 0; i < kPer; ++i) y[i] = (xv[i] - mean) * inv * wv[i] + bv[i];
}

// LayerNorm with the token-shift mixes for steps whose items have several rows
// (LaunchLayerNormShiftRows): one block a row. Block r normalizes row r and, unless r is
// its item's first row, row r - 1 again (the same threads, columns and order as row r - 1's
// own block: the same bits), so that no float32 copy of the normed rows is written and read
// back (LayerNorm + LaunchTokenShift wrote and read one, in two launches). The item's first
// row takes the saved vector as its prev; that block is the only one touching the vector,
// so it also stores the item's last normed row there (normalizing it a third time when the
// item is longer than a row), each thread its own columns after reading them. The mixes'
// arithmetic is TokenShiftMixKernel's: y + (prev - y) * mix, rounded to half.
template <int kPer>
__global__ void __launch_bounds__(kThreads) LayerNormShiftRowsKernel(LayerNormParams p, LayerNormItems items) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const int it = items.row_item[r];
  const int row0 = items.item_row0[it], last = row0 + items.item_len[it] - 1;
  const bool first = r == row0;  // uniform over the block, as every branch below
  float* st = p.item_state[it] + p.state_off;
  float wv[kPer], bv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const bool in = c < p.C;
    wv[i] = in ? __ldg(p.w + c) : 0.f;
    bv[i] = in ? __ldg(p.b + c) : 0.f;
  }
  float y[kPer], prev[kPer];
  if (first) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = threadIdx.x + i * kThreads;
      prev[i] = c < p.C ? st[c] : 0.f;
    }
  }
  NormedRow<kPer>(p, r, wv, bv, scratch, y);
  if (!first) NormedRow<kPer>(p, r - 1, wv, bv, scratch, prev);
  const size_t plane = static_cast<size_t>(p.rows) * p.C;
  const int n_mix = p.n_mix;
  ColumnsWithMixes<kPer>(p, n_mix, [&](int i, int c, const float (&mv)[kMaxMix]) {
    const size_t o = static_cast<size_t>(r) * p.C + c;
    const float d = prev[i] - y[i];
#pragma unroll
    for (int m = 0; m < kMaxMix; ++m)
      if (m < n_mix) StoreHalf(p.mix_out, m * plane + o, y[i] + d * mv[m], p.bf16);
  });
  if (first) {
    if (last != r) NormedRow<kPer>(p, last, wv, bv, scratch, y);
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int c = threadIdx.x + i * kThreads;
      if (c < p.C) st[c] = y[i];
    }
  }
}

// Any width (C > kThreads * 16): the same arithmetic, loads as they come.
__global__ void LayerNormKernel(LayerNormParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float scratch[33];
  const int r = blockIdx.x;
  const float* x = RowIn(p, r);
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

namespace {
// The register and slice forms, plain or with the reads before the PDL wait.
template <int kPer, bool kEarly>
cudaError_t Regs(const LayerNormParams& p, cudaStream_t s) {
  if constexpr (kEarly)
    RWKVX_KLAUNCH(LayerNormRegsEarlyKernel<kPer>, p.rows, kThreads, 0, s, p);
  else
    RWKVX_KLAUNCH(LayerNormRegsKernel<kPer>, p.rows, kThreads, 0, s, p);
  return cudaGetLastError();
}
template <int kPer, bool kEarly>
cudaError_t Slice(const LayerNormParams& p, dim3 grid, cudaStream_t s) {
  if constexpr (kEarly)
    RWKVX_KLAUNCH(LayerNormSliceEarlyKernel<kPer>, grid, kThreads, 0, s, p);
  else
    RWKVX_KLAUNCH(LayerNormSliceKernel<kPer>, grid, kThreads, 0, s, p);
  return cudaGetLastError();
}

template <bool kEarly>
cudaError_t LaunchForm(const LayerNormParams& p, cudaStream_t s) {
  // The register kernel keeps the row (and its mix vectors) in registers: up to 16
  // columns a thread, at most kMaxMix mixes. out may alias x: each thread reads its own
  // columns before it writes them, as in the generic kernel.
  // The wide instances hold 160-230 registers a thread (one block per SM): worth it for
  // the few rows of a decode step, not for a prefill's hundreds of rows.
  const int per = (p.C + kThreads - 1) / kThreads;
  const bool mix_ok = !p.mix || p.n_mix <= kMaxMix;  // the register and row kernels hold kMaxMix
  const bool regs = mix_ok && (per <= 4 || (per <= 16 && p.rows <= 128));
  // A decode step of a few sessions: each row over `per` blocks (LayerNormSliceKernel),
  // where out cannot overlap the rows other blocks still read.
  const size_t span = static_cast<size_t>(p.rows) * p.C;
  const bool apart = !p.out || (!p.row_index && (p.out + span <= p.x || p.x + span <= p.out));
  if (mix_ok && apart && per >= 2 && per <= 16 && p.rows <= kSliceMaxRows) {
    const dim3 grid(p.rows, per);
    if (per <= 4) return Slice<4, kEarly>(p, grid, s);
    if (per <= 10) return Slice<10, kEarly>(p, grid, s);
    return Slice<16, kEarly>(p, grid, s);
  }
  if (regs && per <= 4) return Regs<4, kEarly>(p, s);
  if (regs && per <= 10) return Regs<10, kEarly>(p, s);
  if (regs) return Regs<16, kEarly>(p, s);
  if (mix_ok && per <= 10) {  // many rows: the row and its weights in registers
    RWKVX_KLAUNCH(LayerNormRowKernel<10>, p.rows, kThreads, 0, s, p);
  } else if (mix_ok && per <= 16) {
    RWKVX_KLAUNCH(LayerNormRowKernel<16>, p.rows, kThreads, 0, s, p);
  } else {
    RWKVX_KLAUNCH(LayerNormKernel, p.rows, kThreads, 0, s, p);
  }
  return cudaGetLastError();
}
}  // namespace

cudaError_t LaunchLayerNorm(const LayerNormParams& p, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  if (p.mix && (p.row_index || !p.item_state || !p.mix_out || p.n_mix < 1)) return cudaErrorInvalidValue;
  return p.early ? LaunchForm<true>(p, s) : LaunchForm<false>(p, s);
}

cudaError_t LaunchLayerNormShiftRows(const LayerNormParams& p, const LayerNormItems& items, cudaStream_t s) {
  if (p.rows == 0) return cudaSuccess;
  const int per = (p.C + kThreads - 1) / kThreads;
  if (!p.mix || p.n_mix < 1 || p.n_mix > kMaxMix || !p.mix_out || !p.item_state || p.row_index || p.out ||
      p.out_half || !items.row_item || !items.item_row0 || !items.item_len || per > 16)
    return cudaErrorInvalidValue;
  if (per <= 4) {
    RWKVX_KLAUNCH(LayerNormShiftRowsKernel<4>, p.rows, kThreads, 0, s, p, items);
  } else if (per <= 10) {
    RWKVX_KLAUNCH(LayerNormShiftRowsKernel<10>, p.rows, kThreads, 0, s, p, items);
  } else {
    RWKVX_KLAUNCH(LayerNormShiftRowsKernel<16>, p.rows, kThreads, 0, s, p, items);
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
