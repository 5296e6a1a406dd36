// The sampler in one launch (kernels/sample.cuh, SampleParams::impl): on GPUs with
// thread-block clusters (sm_90 and later) each row is sampled by a cluster of C blocks,
// block `rank` holding ids [rank * chunk, (rank + 1) * chunk) of the row in shared memory
// for every pass, so the row is read from global memory once (the passes form of
// kernels/sample.cu reads it once a pass: 10 to 16 times for a top-p row) and the step
// launches one kernel instead of 4 to 17. The passes are sample.cu's, in the same order
// with the same arithmetic; what sample.cu hands between launches through the scratch
// buffer, the blocks of a cluster read from each other's shared memory (distributed shared
// memory): each block stores its partial into every block's inbox before a cluster
// barrier, so that after it the merges read local shared memory. Every cross-block quantity is an integer or a maximum
// merged in rank order, so the tokens and log-probabilities are the passes form's bits
// (CudaSample.ClusterEqualsPasses), whatever C is.
// After the maximum, a block's copy holds each id's probability relative to the top token
// (expf(x - m), the radix key's float): the rounds read it instead of recomputing it.
#include <cooperative_groups.h>

#include <atomic>

#include "kernels/launch.cuh"
#include "kernels/sample.cuh"
#include "kernels/sample_impl.cuh"

namespace rwkvx::kernels {

using namespace sample_detail;

namespace {

namespace cg = cooperative_groups;

constexpr int kMaxCluster = 16;     // 16 (non-portable, few rows) or 8 (portable)
constexpr int kMinClusterIds = 1024;  // fewer ids a block: a smaller cluster

// One block's partials as every block of its cluster receives them (inbox[rank], stored
// remotely before a cluster barrier). Histograms alternate between two slots: a block
// writes slot k + 1 only after the barrier that every block passes once done reading
// slot k - 1.
struct Pub {
  float max;
  int best, best1, tie_cut;
  u64 tot, w, ties, wsel;
  u64 hist[2][kBins];
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The selection after a round: the cluster's histograms of slot `par` merged in rank
// order, then sample_detail::Advance's choice (the highest bin where the running total
// from the top reaches `need`) as one warp's suffix scan: lane b holds bin b. Every block
// computes the same result. Call from all threads.
__device__ __forceinline__ Sel ClusterAdvance(const Pub* inbox, int C, int par, const Sel& prev, int round, Smem& sm) {
  static_assert(kBins == 32, "a lane per bin");
  const int shift = 30 - kBits * round;
  if (threadIdx.x < kBins) {
    const int lane = static_cast<int>(threadIdx.x);
    u64 mb = 0;
    for (int q = 0; q < C; ++q) mb += inbox[q].hist[par][lane];
    u64 suf = mb;  // bins lane..31
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const u64 up = __shfl_down_sync(0xffffffffu, suf, o);
      if (lane + o < 32) suf += up;
    }
    const unsigned hit = __ballot_sync(0xffffffffu, suf >= prev.need);
    if (lane == 0) sm.st = prev;
    __syncwarp();
    const int b = hit ? 31 - __clz(hit) : -1;
    if (b < 0) {
      if (lane == 0) sm.st.found = 0;
    } else if (lane == b) {
      sm.st.prefix = prev.prefix | (static_cast<unsigned>(b) << shift);
      sm.st.need = prev.need - (suf - mb);
      sm.st.last = mb;
    }
  }
  __syncthreads();
  return sm.st;
}
#endif

// Grid: n * C blocks in clusters of C (cluster q = row q); dynamic shared memory: chunk
// floats.
__global__ void __launch_bounds__(kT) SampleClusterKernel(SampleParams p, int chunk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  cg::cluster_group cl = cg::this_cluster();
  const int C = static_cast<int>(cl.num_blocks());
  const int s = static_cast<int>(cl.block_rank());
  const int r = static_cast<int>(blockIdx.x) / C;
  extern __shared__ __align__(16) float ks[];  // this block's ids: logits, then probabilities
  __shared__ Smem sm;
  __shared__ Pub inbox[kMaxCluster];  // inbox[q]: block q's partials
  __shared__ u64 hw[kWarps][kBins];  // a round's histogram per warp
  const int t = static_cast<int>(threadIdx.x);
  const SampleItem it = p.items[r];
  const Mode md = ModeOf(it, p.V);
  float* gl = p.logits + static_cast<size_t>(it.row) * p.V;
  const int c0 = min(p.V, s * chunk), c1 = min(p.V, c0 + chunk), n = c1 - c0;
  const float* kl = ks - c0;  // kl[i] for i in [c0, c1)
  auto peer = [&](int q) -> const Pub* { return &inbox[q]; };
  // Stores v into field `f` of this block's slot in every block's inbox (f points into
  // inbox[s] here; the barrier after it publishes the stores).
  auto send = [&](auto* f, auto v) {
    for (int q = 0; q < C; ++q) *cl.map_shared_rank(f, q) = v;
  };

  // Adjustments and the mask, in place in the row as MaxKernel does (the logprob and a
  // T != 1 weight read the adjusted logit there), then the copy and the chunk's maximum.
  for (int a = t; a < it.nadj; a += kT) {
    const int tok = p.adj_tok[it.adj0 + a];
    const float v = p.adj_val[it.adj0 + a];
    if (tok >= c0 && tok < c1) gl[tok] = (v == INFINITY) ? -INFINITY : gl[tok] - v;
  }
  if (it.mask0 >= 0) {
    __syncthreads();
    const unsigned* mk = p.mask + it.mask0;
    for (int i = c0 + t; i < c1; i += kT) {
      const int w = i >> 5;
      if (w >= it.nmask || !((mk[w] >> (i & 31)) & 1u)) gl[i] = -INFINITY;
    }
  }
  __syncthreads();
  float m = -INFINITY;
  if ((reinterpret_cast<size_t>(gl + c0) & 15) == 0) {
    const float4* src = reinterpret_cast<const float4*>(gl + c0);
    float4* dst = reinterpret_cast<float4*>(ks);
    const int n4 = n >> 2;
#pragma unroll 8
    for (int j = t; j < n4; j += kT) {
      const float4 q = src[j];
      dst[j] = q;
      m = fmaxf(m, fmaxf(fmaxf(Clean(q.x, false), Clean(q.y, false)), fmaxf(Clean(q.z, false), Clean(q.w, false))));
    }
    for (int i = 4 * n4 + t; i < n; i += kT) {
      const float x = gl[c0 + i];
      ks[i] = x;
      m = fmaxf(m, Clean(x, false));
    }
  } else {
#pragma unroll 4
    for (int i = t; i < n; i += kT) {
      const float x = gl[c0 + i];
      ks[i] = x;
      m = fmaxf(m, Clean(x, false));
    }
  }
  m = BlockReduce(m, sm.f, MaxF());
  if (t == 0) send(&inbox[s].max, m);
  cl.sync();
  m = -INFINITY;
  for (int q = 0; q < C; ++q) m = fmaxf(m, peer(q)->max);
  const bool posinf = m == INFINITY;  // the +inf tokens share everything (Clean)
  if (posinf) m = 0.f;
  const bool none = m == -INFINITY;  // everything banned (the same in every block)

  // Stats: as StatsKernel; the copy becomes the probabilities e = expf(x - m).
  const bool plain = !md.greedy && !md.top1 && !md.topk && !md.topp;
  int best = INT_MAX, best1 = INT_MAX;
  u64 tot = 0, w = 0;
  if (!none) {
    const Keep all;
    ForRange<kT>(kl, c0, c1, t, [&](int i, float v) {
      const float x = Clean(v, posinf);
      const float e = expf(x - m);
      if (x == m) best = min(best, i);
      if (e == 1.f) best1 = min(best1, i);
      tot += Fix(e);
      if (plain) w += Weight(i, x, m, md.inv_t, all);
      ks[i - c0] = e;
    });
  }
  best = BlockReduce(best, sm.i, MinI());
  best1 = BlockReduce(best1, sm.i, MinI());
  tot = BlockReduce(tot, sm.u, Plus());
  w = BlockReduce(w, sm.u, Plus());
  if (t == 0) {
    send(&inbox[s].best, best);
    send(&inbox[s].best1, best1);
    send(&inbox[s].tot, tot);
    send(&inbox[s].w, w);
  }
  cl.sync();
  for (int q = 0; q < C; ++q) {
    const Pub* o = peer(q);
    best = min(best, o->best);
    best1 = min(best1, o->best1);
  }
  u64 tot_all = 0;
  for (int q = 0; q < C; ++q) tot_all += peer(q)->tot;

  // The weight of id i (kept: Fix(p ** (1 / T)), else 0) from its probability e, with
  // sample_detail::Weight's arithmetic (a T != 1 weight from the adjusted logit).
  auto weight_of = [&](int i, float e, const Keep& keep) -> u64 {
    if (!keep(i, __float_as_uint(e))) return 0;
    return Fix(md.inv_t == 1.f ? e : expf((Clean(gl[i], posinf) - m) * md.inv_t));
  };
  // One radix round over this block's copy into slot `par`: counts (top-k) or masses of
  // the ids `keep` keeps (top-p) of the keys matching `prefix` above the digit.
  // A thread adds a run of ids in one bin in a register and the run's total to its warp's
  // histogram (integer atomics: any order gives the same sums); the keys of a row crowd
  // into few bins, so runs are long and the atomics few.
  static_assert(kBins == 32, "a lane per bin");
  auto round_hist = [&](int round, unsigned prefix, bool mass, const Keep& keep, int par) {
    const int shift = 30 - kBits * (round + 1);
    const unsigned above = ~0u << (shift + kBits);
    u64* mine_h = hw[t >> 5];
    mine_h[t & 31] = 0;
    __syncwarp();
    int cur = -1;
    u64 acc = 0;
    ForRange<kT>(kl, c0, c1, t, [&](int i, float e) {
      const unsigned key = __float_as_uint(e);
      if ((key & above) != prefix) return;
      if (mass && !keep(i, key)) return;
      const int bin = (key >> shift) & (kBins - 1);
      if (bin != cur) {
        if (cur >= 0) atomicAdd(&mine_h[cur], acc);
        cur = bin;
        acc = 0;
      }
      acc += mass ? Fix(e) : 1ull;
    });
    if (cur >= 0) atomicAdd(&mine_h[cur], acc);
    __syncthreads();
    if (t < kBins) {
      u64 v = 0;
      for (int w = 0; w < kWarps; ++w) v += hw[w][t];
      send(&inbox[s].hist[par][t], v);
    }
  };
  int par = 0;  // the next histogram slot

  // Top-k: the k-th largest probability (6 rounds), then the last kept tie's id.
  Keep keep;
  if (!none && md.topk) {
    Sel st;
    st.prefix = 0;
    st.found = 1;
    st.last = 0;
    st.need = static_cast<u64>(it.top_k);
    for (int round = 0; round < kRounds; ++round) {
      round_hist(round, st.prefix, false, Keep(), par);
      cl.sync();
      st = ClusterAdvance(inbox, C, par, st, round + 1, sm);
      par ^= 1;
    }
    keep.kth = st.prefix;
    if (st.need < st.last) {  // not every token at the k-th value stays: ties in id order
      u64 ties = 0;
      ForRange<kT>(kl, c0, c1, t, [&](int, float e) { ties += __float_as_uint(e) == st.prefix; });
      ties = BlockReduce(ties, sm.u, Plus());
      if (t == 0) send(&inbox[s].ties, ties);
      cl.sync();
      u64 start = 0;
      int owner = -1;
      for (int q = 0; q < C && owner < 0; ++q) {
        const u64 nq = peer(q)->ties;
        if (start < st.need && st.need <= start + nq) {
          owner = q;
        } else {
          start += nq;
        }
      }
      if (owner == s) {
        const int cut = FindInChunk(kl, c0, c1, st.need - start - 1,
                                    [&](int, float e) -> u64 { return __float_as_uint(e) == st.prefix; }, sm);
        if (t == 0) send(&inbox[s].tie_cut, cut);
      }
      cl.sync();
      if (owner >= 0) keep.tie_cut = peer(owner)->tie_cut;  // (always found: the ties sum to st.last)
    }
  }
  // Top-p: the cutoff over the masses top-k keeps (6 rounds).
  if (!none && md.topp) {
    Sel st;
    st.prefix = 0;
    st.found = 1;
    st.last = 0;
    const double want = ceil(static_cast<double>(it.top_p) * static_cast<double>(tot_all));
    st.need = want < 1.0 ? 1ull : static_cast<u64>(want);
    for (int round = 0; round < kRounds && st.found; ++round) {
      round_hist(round, st.prefix, true, keep, par);
      cl.sync();
      st = ClusterAdvance(inbox, C, par, st, round + 1, sm);
      par ^= 1;
    }
    if (st.found) keep.cutoff = st.prefix;
  }
  // The draw's weights: the stats' for unrestricted rows, else the kept ones'.
  u64 total = 0, start = 0, mine = w;
  if (!none && (md.topk || md.topp)) {
    u64 ws = 0;
    ForRange<kT>(kl, c0, c1, t, [&](int i, float e) { ws += weight_of(i, e, keep); });
    ws = BlockReduce(ws, sm.u, Plus());
    if (t == 0) send(&inbox[s].wsel, ws);
    cl.sync();
    for (int q = 0; q < C; ++q) {
      const u64 wq = peer(q)->wsel;
      total += wq;
      if (q < s) start += wq;
    }
    mine = ws;
  } else {
    for (int q = 0; q < C; ++q) {
      const u64 wq = peer(q)->w;
      total += wq;
      if (q < s) start += wq;
    }
  }

  // The draw, as DrawKernel.
  auto write = [&](int token, float lp) {
    if (t == 0) {
      p.out_token[r] = token;
      p.out_logprob[r] = lp;
    }
  };
  if (none) {
    if (s == 0) write(0, -INFINITY);
  } else {
    const float log_z = m + static_cast<float>(log(static_cast<double>(tot_all) / static_cast<double>(kFix)));
    auto logprob = [&](int tok) { return Clean(gl[tok], posinf) - log_z; };
    if (md.greedy || (!md.top1 && total == 0)) {
      if (s == 0) write(best, logprob(best));
    } else if (md.top1) {
      if (s == 0) {
        if (best1 == INT_MAX) best1 = best;
        const int tok = Weight(best1, Clean(gl[best1], posinf), m, md.inv_t, Keep()) > 0 ? best1 : best;
        write(tok, logprob(tok));
      }
    } else {
      u64 x = static_cast<u64>(it.uniform * static_cast<double>(total));
      if (x >= total) x = total - 1;
      if (start <= x && x < start + mine) {  // block-uniform: this block's chunk holds the draw
        const int found = FindInChunk(kl, c0, c1, x - start, [&](int i, float e) { return weight_of(i, e, keep); }, sm);
        const int tok = found >= 0 ? found : best;
        write(tok, logprob(tok));
      }
    }
  }
  cl.sync();  // no block leaves while another may still read its shared memory
#endif
}

// The cluster size (at most `want`, smaller for short rows) and chunk for rows of V ids;
// 0 where a block's share does not fit.
int ClusterFor(int V, int want, int* chunk) {
  int C = want;
  while (C > 1 && V < C * kMinClusterIds) C /= 2;
  *chunk = ((V + C - 1) / C + 31) / 32 * 32;
  const size_t smem = static_cast<size_t>(*chunk) * sizeof(float);
  return smem + sizeof(Smem) + sizeof(Pub) * kMaxCluster + sizeof(u64) * kBins * kWarps <= 227 * 1024 ? C : 0;
}

// Per device and cluster size (log2): 0 unknown, 1 usable, 2 not.
std::atomic<int> g_usable[16][5];
std::atomic<int> g_sms[16];

int Log2(int C) { return C >= 16 ? 4 : C >= 8 ? 3 : C >= 4 ? 2 : C >= 2 ? 1 : 0; }

// Whether clusters of C blocks with `chunk` floats of dynamic shared memory can run on
// device `dev` (sm_90+, an occupancy of at least one cluster); checked once.
bool Usable(int dev, int C, int chunk) {
  std::atomic<int>& u = g_usable[dev][Log2(C)];
  int known = u.load(std::memory_order_acquire);
  if (known == 0) {
    known = 2;
    int major = 0;
    const size_t smem = static_cast<size_t>(chunk) * sizeof(float);
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9 &&
        cudaFuncSetAttribute(SampleClusterKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)) == cudaSuccess &&
        (C <= 8 || cudaFuncSetAttribute(SampleClusterKernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
                       cudaSuccess)) {
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = C;
      attr[0].val.clusterDim.y = 1;
      attr[0].val.clusterDim.z = 1;
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(C);
      cfg.blockDim = dim3(kT);
      cfg.dynamicSmemBytes = smem;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, SampleClusterKernel, &cfg) == cudaSuccess && clusters > 0)
        known = 1;
    }
    cudaGetLastError();  // a refused query leaves no sticky error behind
    u.store(known, std::memory_order_release);
  }
  return known == 1;
}

// The cluster size for n rows of V ids on the current device (16 blocks a row where 16
// blocks for each row are at most two per SM, else 8), 0 if none can run.
int PickCluster(int n, int V, int* chunk) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) return 0;
  int sms = g_sms[dev].load(std::memory_order_relaxed);
  if (sms == 0) {
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
    g_sms[dev].store(sms, std::memory_order_relaxed);
  }
  for (int want : {16, 8}) {
    if (want == 16 && static_cast<long long>(n) * 16 > 2LL * sms) continue;
    const int C = ClusterFor(V, want, chunk);
    if (C > 0 && Usable(dev, C, *chunk)) return C;
  }
  return 0;
}

}  // namespace

bool SampleClusterUsable(int V) {
  int chunk = 0;
  return PickCluster(1 << 20, V, &chunk) > 0;  // the portable size (many rows)
}

cudaError_t sample_detail::LaunchSampleCluster(const SampleParams& p, cudaStream_t s) {
  int chunk = 0;
  const int C = PickCluster(p.n, p.V, &chunk);
  if (C == 0) return cudaErrorNotSupported;
  const size_t smem = static_cast<size_t>(chunk) * sizeof(float);
  // Per launch (cheap, host only): the attribute is per function, and another V may have
  // set a smaller size since.
  cudaError_t e = cudaFuncSetAttribute(SampleClusterKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = C;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(p.n) * C);
  cfg.blockDim = dim3(kT);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = PdlOn() ? 2 : 1;
  e = cudaLaunchKernelEx(&cfg, SampleClusterKernel, p, chunk);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // namespace rwkvx::kernels
