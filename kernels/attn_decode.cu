#include "kernels/launch.cuh"
#include "kernels/attn_decode.cuh"
#include "kernels/chunk_select_impl.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/kv_append_row.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int kWarps = 4;
constexpr int kGroups = 4;  // rows a warp reads at once: 8 lanes per row, 8 dims (16 bytes) a lane
// Rows per lane group loaded before the first is used: 4 (2 until session 22: 0.965x the time
// of a 0.2B token at 32K context with chunk_select's rewrite; 8 for steps of <= 4 items
// measured 0.97-1.02x, within the runs' spread, not kept). Each lane group walks the same
// rows in the same order whatever this is: the same bits.
constexpr int kUnroll = 4;

__device__ __forceinline__ int ItemKeys(const AttnItem& it, int chunk, int nsel, int* tail0) {
  *tail0 = it.sparse ? (it.ct / chunk) * chunk : 0;
  return nsel * chunk + (it.ct + 1 - *tail0);
}

__device__ __forceinline__ void Unpack8(const uint4& raw, float* f) {
  const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h2[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// The merge of one (item, head)'s slices in slice order, by threads 0..63 (one output
// dimension each; two whole warps). `other_blocks`: the slices were written by other blocks
// of the running grid, so they are read past this SM's L1. Lane s of each warp loads slice
// s's max and sum (and s + 32's) in one round; the sum over slices then takes them from that
// lane by shuffle and issues its loads of the slices' outputs 8 at a time. The same
// operations in the same order as the loop over slices it replaced in session 22 (the same
// bits by construction; not compared against the old kernel), which waited on two loads a
// slice one slice after another.
__device__ __forceinline__ void Combine(const AttnDecodeParams& p, int h, int item, const AttnItem& it,
                                        int splits, bool other_blocks) {
  const float* part = p.part + (static_cast<size_t>(item) * p.H + h) * p.splits * 66;
  auto ld = [&](int i) { return other_blocks ? __ldcg(part + i) : part[i]; };
  const int lane = threadIdx.x & 31;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // splits <= 64
  if (lane < splits) { m0 = ld(lane * 66); l0 = ld(lane * 66 + 1); }
  if (lane + 32 < splits) { m1 = ld((lane + 32) * 66); l1 = ld((lane + 32) * 66 + 1); }
  float M = fmaxf(m0, m1);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  const float f0 = expf(m0 - M), f1 = expf(m1 - M);
  float L = 0.f, A = 0.f;
#pragma unroll 8
  for (int s = 0; s < splits; ++s) {
    const int src = s & 31;
    const float ms = __shfl_sync(0xffffffffu, s < 32 ? m0 : m1, src);
    const float f = __shfl_sync(0xffffffffu, s < 32 ? f0 : f1, src);
    const float ls = __shfl_sync(0xffffffffu, s < 32 ? l0 : l1, src);
    const float a = ld(s * 66 + 2 + threadIdx.x);
    if (ms == -INFINITY) continue;
    L += ls * f;
    A += a * f;
  }
  StoreHalf(p.out, static_cast<size_t>(it.row0) * p.C + h * 64 + threadIdx.x, A / L, p.bf16);
}

// kv_append's one-row form (KvAppendKernel with one_row_items) for head h's 64 columns of
// the item's new row: threads 0-63 the key and its chunk sum, 64-127 the value.
__device__ __forceinline__ void AppendRow(const AttnDecodeParams& p, const AttnItem& it, int h) {
  const int t = threadIdx.x & 63, c = h * 64 + t;
  const size_t src = static_cast<size_t>(it.row0) * p.C + c;
  __half* dk = it.kv.K(it.ct, p.C);
  if (threadIdx.x >= 64) {
    dk[it.kv.v_off + c] = __float2half_rn(p.append_v[src]);
    return;
  }
  const float k = p.append_k[src];
  dk[c] = __float2half_rn(k);
  const int ch = it.ct / p.chunk;
  float* sum = it.sums.Row(ch, p.C);
  sum[c] = OneRowChunkSum(sum, c, ch * p.chunk >= it.ct, k);
}

// The slices an item of L keys is cut into (AttnDecodeParams::splits / split_want).
__device__ __forceinline__ int SplitsOf(const AttnDecodeParams& p, int L) {
  return p.split_want > 0 ? min(p.splits, ItemSplits(L, p.split_want)) : p.splits;
}

// grid (H, items, splits), 128 threads. Each warp reads kGroups rows of the slice at once
// (lane group g = lane / 8 takes a row, lane holds dims 8 * (lane % 8) .. + 8), kUnroll
// rows per group in flight; each group keeps its own online softmax, merged across the
// warp's groups (fixed shuffle order) and then across the block's warps.
__global__ void __launch_bounds__(128) AttnDecodeKernel(AttnDecodeParams p) {
  {
    // Before the wait, L2 prefetches (hints) of the slice's key and value rows where the
    // item attends every cached row (the slice is then known from the item alone; a
    // selection is the kernel before's output): the rows below ct were written in earlier
    // steps, and the item list and page tables were uploaded and updated before the step's
    // first kernel (kernels/launch.cuh). Row ct, the one kv_append writes, is left out.
    const AttnItem& it = p.items[blockIdx.y];
    if (p.prefetch_rows && it.len == 1 && !it.sparse && !p.sparse_only) {
      const int L = it.ct + 1;  // ItemKeys without a selection
      const int splits = SplitsOf(p, L);
      const int span = (L + splits - 1) / splits, v0 = blockIdx.z * span, v1 = min(it.ct, v0 + span);
      for (int row = v0 + (threadIdx.x >> 1); row < v1; row += blockDim.x / 2) {
        const __half* kr = it.kv.K(row, p.C) + blockIdx.x * 64;
        PrefetchL2((threadIdx.x & 1) ? kr + it.kv.v_off : kr);
      }
    }
  }
  PdlWait();  // before any other memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ float sm[kWarps], sl[kWarps];
  __shared__ float sacc[kWarps][64];
  __shared__ int ssel[16];
  const int h = blockIdx.x, item = blockIdx.y, split = blockIdx.z;
  const AttnItem& it = p.items[item];
  if (it.len != 1 || (p.sparse_only && !it.sparse)) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 3, sub = lane & 7;
  int nsel = 0;
  if (it.sparse) nsel = min(p.topk, it.ct / p.chunk);
  if (p.select) {
    // chunk_select's scores and top-k in this block (dynamic shared memory: the scores).
    if (nsel > 0) {  // block-uniform
      extern __shared__ float sscore[];
      const int nchunks = it.ct / p.chunk;
      const float* q = p.q + static_cast<size_t>(it.row0) * p.C;
      for (int c = warp; c < nchunks; c += kWarps) {
        const float d = chunk_select::Score(q, it.sums.Row(c, p.C), p.C, p.chunk, lane);
        if (lane == 0) sscore[c] = d;
      }
      __syncthreads();
      if (warp == 0) chunk_select::TopK(sscore, nchunks, p.topk, ssel, lane);
    }
  } else if (threadIdx.x < nsel) {
    ssel[threadIdx.x] = p.selected[item * p.topk + threadIdx.x];
  }
  int tail0;
  const int L = ItemKeys(it, p.chunk, nsel, &tail0);
  const int splits = SplitsOf(p, L);
  const int span = (L + splits - 1) / splits;
  // The slice holding key L - 1 (row ct) appends the row first; the barrier below makes the
  // block's stores visible to its own loads.
  if (p.append_k && split == (L - 1) / span) AppendRow(p, it, h);
  __syncthreads();
  if (split >= splits) return;  // block-uniform, before any barrier or ticket
  const int v_begin = split * span, v_end = min(L, v_begin + span);

  const float* qp = p.q + static_cast<size_t>(it.row0) * p.C + h * 64 + 8 * sub;
  float q[8];
  {
    const float4 a = *reinterpret_cast<const float4*>(qp), b = *reinterpret_cast<const float4*>(qp + 4);
    q[0] = a.x * 0.125f; q[1] = a.y * 0.125f; q[2] = a.z * 0.125f; q[3] = a.w * 0.125f;
    q[4] = b.x * 0.125f; q[5] = b.y * 0.125f; q[6] = b.z * 0.125f; q[7] = b.w * 0.125f;
  }
  float m = -INFINITY, l = 0.f, acc[8];
#pragma unroll
  for (int d = 0; d < 8; ++d) acc[d] = 0.f;
  const int sel_rows = nsel * p.chunk;
  constexpr int kStride = kWarps * kGroups;
  for (int base = v_begin + warp * kGroups + g; base - g < v_end; base += kStride * kUnroll) {
    uint4 kraw[kUnroll], vraw[kUnroll];
    bool ok[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int vi = base + u * kStride;
      ok[u] = vi < v_end;
      kraw[u] = vraw[u] = make_uint4(0, 0, 0, 0);
      if (ok[u]) {
        const int row = vi < sel_rows ? ssel[vi / p.chunk] * p.chunk + vi % p.chunk : tail0 + (vi - sel_rows);
        const __half* kr = it.kv.K(row, p.C) + h * 64 + 8 * sub;
        kraw[u] = *reinterpret_cast<const uint4*>(kr);
        vraw[u] = *reinterpret_cast<const uint4*>(kr + it.kv.v_off);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[8];
      Unpack8(kraw[u], kf);
      float sc = 0.f;
#pragma unroll
      for (int d = 0; d < 8; ++d) sc += q[d] * kf[d];
      // Every lane shuffles (rows past the slice too): sums within the 8-lane group.
      sc += __shfl_xor_sync(0xffffffffu, sc, 1);
      sc += __shfl_xor_sync(0xffffffffu, sc, 2);
      sc += __shfl_xor_sync(0xffffffffu, sc, 4);
      if (!ok[u]) continue;
      float vf[8];
      Unpack8(vraw[u], vf);
      const float mn = fmaxf(m, sc);
      const float corr = expf(m - mn), pw = expf(sc - mn);
      l = l * corr + pw;
#pragma unroll
      for (int d = 0; d < 8; ++d) acc[d] = acc[d] * corr + pw * vf[d];
      m = mn;
    }
  }
  // Merge the warp's four groups (lane groups 8 and 16 apart).
#pragma unroll
  for (int o = 8; o <= 16; o <<= 1) {
    const float mo = __shfl_xor_sync(0xffffffffu, m, o), lo = __shfl_xor_sync(0xffffffffu, l, o);
    const float M = fmaxf(m, mo);
    const float f = m == -INFINITY ? 0.f : expf(m - M), fo = mo == -INFINITY ? 0.f : expf(mo - M);
    l = l * f + lo * fo;
#pragma unroll
    for (int d = 0; d < 8; ++d) {
      const float ao = __shfl_xor_sync(0xffffffffu, acc[d], o);
      acc[d] = acc[d] * f + ao * fo;
    }
    m = M;
  }
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
  if (g == 0) {
#pragma unroll
    for (int d = 0; d < 8; ++d) sacc[warp][8 * sub + d] = acc[d];
  }
  __syncthreads();
  if (threadIdx.x < 64) {
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm[w]);
    float L2 = 0.f, A = 0.f;
    if (M != -INFINITY) {
      for (int w = 0; w < kWarps; ++w) {
        if (sm[w] == -INFINITY) continue;
        const float f = expf(sm[w] - M);
        L2 += sl[w] * f;
        A += sacc[w][threadIdx.x] * f;
      }
    }
    float* part = p.part + ((static_cast<size_t>(item) * p.H + h) * p.splits + split) * 66;
    part[2 + threadIdx.x] = A;
    if (threadIdx.x == 0) { part[0] = M; part[1] = L2; }
  }
  if (!p.tickets) return;
  // The last of the (item, head)'s blocks to get here merges the slices.
  __shared__ bool last;
  __threadfence();  // this block's slice, visible to whichever block merges
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* ticket = p.tickets + static_cast<size_t>(item) * p.H + h;
    last = atomicAdd(ticket, 1u) == static_cast<unsigned>(splits - 1);
    if (last) *ticket = 0;  // every block has counted: ready for the next launch
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (threadIdx.x < 64) Combine(p, h, item, it, splits, true);
}

// grid (H, items), 64 threads.
__global__ void AttnDecodeCombineKernel(AttnDecodeParams p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  const int h = blockIdx.x, item = blockIdx.y;
  const AttnItem& it = p.items[item];
  if (it.len != 1 || (p.sparse_only && !it.sparse)) return;
  int splits = p.splits;
  if (p.split_want > 0) {
    const int nsel = it.sparse ? min(p.topk, it.ct / p.chunk) : 0;
    int tail0;
    splits = min(p.splits, ItemSplits(ItemKeys(it, p.chunk, nsel, &tail0), p.split_want));
  }
  Combine(p, h, item, it, splits, false);
}
}  // namespace

cudaError_t LaunchAttnDecode(const AttnDecodeParams& p, cudaStream_t s) {
  if (p.n_items == 0) return cudaSuccess;
  if (p.topk > 16) return cudaErrorInvalidValue;
  if ((p.append_k == nullptr) != (p.append_v == nullptr) || (p.append_k && (p.sparse_only || p.C != 64 * p.H)))
    return cudaErrorInvalidValue;
  const size_t smem = p.select ? static_cast<size_t>(p.max_chunks) * sizeof(float) : 0;
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(AttnDecodeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  RWKVX_KLAUNCH(AttnDecodeKernel, dim3(p.H, p.n_items, p.splits), 128, smem, s, p);
  if (!p.tickets) RWKVX_KLAUNCH(AttnDecodeCombineKernel, dim3(p.H, p.n_items), 64, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
