// The sampler's kernels (kernels/sample.cuh). Grid (row, split): block (r, s) owns ids
// [s * chunk, min(V, (s + 1) * chunk)) of row r. In launch order:
//   Max     adjustments and the mask in the chunk, the chunk's maximum (NaN cleaned)
//   Stats   the row's maximum from the chunks'; per chunk: the fixed-point mass, the lowest
//           id at the maximum (greedy), the lowest id whose probability rounds to 1 (top-k
//           1), the draw weights' sum for rows top-k / top-p leave alone, and for rows
//           only top-p restricts, top-p's round-0 histogram
//   Round   (top-k, then top-p; 6 each) one radix digit of the k-th largest probability /
//           of the top-p cutoff: every block merges the previous round's per-chunk
//           histograms (fixed order, integers), advances the selection, and builds its
//           chunk's histogram of the next digit in per-thread shared-memory columns; the
//           last top-p round of a top-p-only row also sums its draw weights per chunk:
//           above the selected prefix and per bin of the last digit
//   Tie     top-k's final state; ties at the k-th value counted per chunk
//   TieCut  the block holding the last kept tie finds its id (id order)
//   Weight  (rows top-k restricts) per chunk the sum of the kept tokens' weights p ** (1 / T)
//   Draw    the block whose chunk holds the draw walks it in id order; one block per row
//           writes (token, logprob). For top-p-only rows it first takes the cutoff from the
//           last round's histograms and each chunk's weight sum from that round's bins
// A top-p-only row (a request with top-p and no top-k) thus takes Max, Stats, rounds 1..5
// and Draw: 8 launches, not 10.
// Every cross-block quantity is an integer or a maximum, so the split changes no bit.
#include "kernels/sample.cuh"

#include <atomic>

#include "kernels/launch.cuh"
#include "kernels/sample_impl.cuh"

namespace rwkvx::kernels {

using namespace sample_detail;

namespace {

__global__ void __launch_bounds__(kT) MaxKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, nullptr);
  // Bans and penalties in this chunk (each token at most once: no two threads share one).
  for (int a = threadIdx.x; a < b.it.nadj; a += kT) {
    const int t = p.adj_tok[b.it.adj0 + a];
    const float v = p.adj_val[b.it.adj0 + a];
    if (t >= b.c0 && t < b.c1) b.l[t] = (v == INFINITY) ? -INFINITY : b.l[t] - v;
  }
  if (b.it.mask0 >= 0) {  // the grammar's mask (structured output), after the adjustments
    __syncthreads();
    const unsigned* mk = p.mask + b.it.mask0;
    for (int i = b.c0 + threadIdx.x; i < b.c1; i += kT) {
      const int w = i >> 5;
      if (w >= b.it.nmask || !((mk[w] >> (i & 31)) & 1u)) b.l[i] = -INFINITY;
    }
  }
  __syncthreads();
  float m = -INFINITY;
  ForChunk(b.l, b.c0, b.c1, [&](int, float x) { m = fmaxf(m, Clean(x, false)); });
  m = BlockReduce(m, sm.f, MaxF());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].max = m;
}

// kRound0: some row of the launch is top-p-only (kSampleTopPOnly) and takes its round-0
// histogram here; without it the kernel keeps its small shared memory (greedy and plain
// steps: more blocks an SM).
template <bool kRound0>
__global__ void __launch_bounds__(kT) StatsKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  __shared__ u64 h[kRound0 ? kBins : 1][kRound0 ? kT : 1];  // top-p's round-0 histogram (RoundKernel's)
  const Blk b(p, g, &sc);
  const float m = b.m;
  const bool posinf = b.posinf;
  if (m == -INFINITY) return;  // everything banned
  const bool plain = !b.md.greedy && !b.md.top1 && !b.md.topk && !b.md.topp;
  const bool round0 = kRound0 && FoldsTopP(b.md);  // uniform over the block
  constexpr int shift0 = 30 - kBits;    // round 0's digit (bits 29..25; nothing above: e <= 1)
  if constexpr (kRound0) {
    if (round0) {
#pragma unroll
      for (int d = 0; d < kBins; ++d) h[d][threadIdx.x] = 0;
    }
  }
  const Keep all;
  int best = INT_MAX, best1 = INT_MAX;
  u64 tot = 0, w = 0;
  ForChunk(b.l, b.c0, b.c1, [&](int i, float v) {
    const float x = Clean(v, posinf);
    const float e = expf(x - m);
    if (x == m) best = min(best, i);
    if (e == 1.f) best1 = min(best1, i);
    const u64 f = Fix(e);
    tot += f;
    if (plain) w += Weight(i, x, m, b.md.inv_t, all);
    if constexpr (kRound0) {
      if (round0) {
        const unsigned key = __float_as_uint(e);
        if ((key >> (shift0 + kBits)) == 0) h[(key >> shift0) & (kBins - 1)][threadIdx.x] += f;
      }
    }
  });
  if constexpr (kRound0) {
    if (round0) {
      __syncthreads();
      WriteHist(h, sc, b.r, b.s, g.S, 0);
    }
  }
  best = BlockReduce(best, sm.i, MinI());
  best1 = BlockReduce(best1, sm.i, MinI());
  tot = BlockReduce(tot, sm.u, Plus());
  w = BlockReduce(w, sm.u, Plus());
  if (threadIdx.x == 0) {
    Part& pt = sc.part[b.r * g.S + b.s];
    pt.best = best;
    pt.best1 = best1;
    pt.tot = tot;
    pt.w = w;
  }
}

// Round `round` of top-k (kMass false: counts of all tokens) or top-p (kMass true: masses
// of the tokens top-k keeps). Top-p-only rows (FoldsTopP) had round 0 in the sum pass and
// sum their draw weights in the last round: per chunk the weights above the selected
// prefix (Part::w) and per bin of the last digit (Scratch::wbin), so the draw pass adds
// the bins at or above the cutoff's without a weight pass.
template <bool kMass>
__global__ void __launch_bounds__(kT) RoundKernel(SampleParams p, Scratch sc, Geo g, int round) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  __shared__ u64 h[kBins][kT];  // one column per thread: no atomics, no bank conflicts
  __shared__ u64 wb[kBins];     // the last round of a top-p-only row: weights per bin
  const Blk b(p, g, &sc);
  if (!(kMass ? b.md.topp : b.md.topk)) return;
  const bool folded = kMass && FoldsTopP(b.md);
  if (folded && round == 0) return;  // built by the sum pass
  const float m = b.m;
  const bool posinf = b.posinf;
  if (m == -INFINITY) return;
  RowState& rs = sc.row[b.r];
  Sel* slots = kMass ? rs.p : rs.k;
  Sel st;
  if (round == 0) {
    if (kMass) {  // target: top_p of the whole mass (before top-k), at least one unit
      st = TopPStart(sc, b.r, g.S, b.it.top_p);
    } else {
      st.prefix = 0;
      st.found = 1;
      st.last = 0;
      st.need = static_cast<u64>(b.it.top_k);
    }
    if (b.s == 0 && threadIdx.x == 0) slots[0] = st;
  } else {
    const Sel prev = (folded && round == 1) ? TopPStart(sc, b.r, g.S, b.it.top_p) : slots[round - 1];
    st = Advance(sc, prev, b.r, b.s, g.S, round, &slots[round], sm);
  }
  const bool weigh = folded && round == kRounds - 1;  // uniform over the block
  if (!st.found && !weigh) return;
  const int shift = 30 - kBits * (round + 1);
  const unsigned above = ~0u << (shift + kBits);  // bits already selected
  const Keep keep = kMass ? KeepOf(rs, b.md, false) : Keep();
  const float inv_t = b.md.inv_t;
  if (st.found) {
#pragma unroll
    for (int d = 0; d < kBins; ++d) h[d][threadIdx.x] = 0;
  }
  if (weigh) {
    if (threadIdx.x < kBins) wb[threadIdx.x] = 0;
    __syncthreads();
  }
  u64 wa = 0;  // weigh: kept tokens above the prefix (all tokens when top-p was not reached)
  ForChunk(b.l, b.c0, b.c1, [&](int i, float v) {
    const float x = Clean(v, posinf);
    const float e = expf(x - m);
    const unsigned key = __float_as_uint(e);
    if (!st.found) {  // weigh only: the cutoff stays 0, every token is kept
      wa += WeightE(x, e, m, inv_t);
      return;
    }
    const unsigned hi = key & above;
    if (hi != st.prefix) {
      if (weigh && hi > st.prefix) wa += WeightE(x, e, m, inv_t);
      return;
    }
    if (kMass && !keep(i, key)) return;
    const int bin = (key >> shift) & (kBins - 1);
    h[bin][threadIdx.x] += kMass ? Fix(e) : 1ull;
    if (weigh) atomicAdd(&wb[bin], WeightE(x, e, m, inv_t));  // integers: any order
  });
  __syncthreads();
  if (st.found) WriteHist(h, sc, b.r, b.s, g.S, round);
  if (weigh) {
    wa = BlockReduce(wa, sm.u, Plus());
    if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].w = wa;
    if (threadIdx.x < kBins) sc.wbin[(static_cast<size_t>(b.r) * g.S + b.s) * kBins + threadIdx.x] = wb[threadIdx.x];
  }
}

__global__ void __launch_bounds__(kT) TieKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, &sc);
  if (!b.md.topk || b.m == -INFINITY) return;
  RowState& rs = sc.row[b.r];
  const Sel f = Advance(sc, rs.k[kRounds - 1], b.r, b.s, g.S, kRounds, &rs.k[kRounds], sm);
  if (!(f.need < f.last)) return;  // every token at the k-th value stays
  u64 n = 0;
  ForChunk(b.l, b.c0, b.c1, [&](int, float v) { n += b.Key(v) == f.prefix; });
  n = BlockReduce(n, sm.u, Plus());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].ties = n;
}

// The block whose chunk holds the last kept tie (ties in id order) records its id.
__global__ void __launch_bounds__(kT) TieCutKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, &sc);
  if (!b.md.topk || b.m == -INFINITY) return;
  const Sel f = sc.row[b.r].k[kRounds];
  if (!(f.need < f.last)) return;
  const Part* pt = sc.part + b.r * g.S;
  const int lane = threadIdx.x & 31;
  const u64 start = WarpFold(lane < b.s ? pt[lane].ties : 0ull, Plus());
  if (!(start < f.need && f.need <= start + pt[b.s].ties)) return;  // elsewhere
  const int cut = FindInChunk(b.l, b.c0, b.c1, f.need - start - 1,
                              [&](int, float v) -> u64 { return b.Key(v) == f.prefix; }, sm);
  if (threadIdx.x == 0) sc.row[b.r].tie_cut = cut;
}

__global__ void __launch_bounds__(kT) WeightKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, &sc);
  if (!b.md.topk) return;  // top-p-only rows summed their weights in their last round
  const float m = b.m;
  const bool posinf = b.posinf;
  if (m == -INFINITY) return;
  RowState& rs = sc.row[b.r];
  Keep keep = KeepOf(rs, b.md, false);
  if (b.md.topp) {  // top-p's result (block (r, 0) records it for the draw)
    const Sel f = Advance(sc, rs.p[kRounds - 1], b.r, b.s, g.S, kRounds, &rs.p[kRounds], sm);
    if (f.found) keep.cutoff = f.prefix;
  }
  u64 w = 0;
  ForChunk(b.l, b.c0, b.c1, [&](int i, float v) { w += Weight(i, Clean(v, posinf), m, b.md.inv_t, keep); });
  w = BlockReduce(w, sm.u, Plus());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].w = w;
}

__global__ void __launch_bounds__(kT) DrawKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, &sc);
  const Part* pt = sc.part + b.r * g.S;
  auto write = [&](int token, float lp) {
    if (threadIdx.x == 0) {
      p.out_token[b.r] = token;
      p.out_logprob[b.r] = lp;
    }
  };
  if (b.m == -INFINITY) {  // everything banned: end of text with log-probability -inf
    if (b.s == 0) write(0, -INFINITY);
    return;
  }
  // Top-p-only rows: the cutoff from the last round's histograms, and each chunk's weight
  // sum from that round's per-bin weights (at or above the cutoff's bin) and Part::w.
  const bool folded = FoldsTopP(b.md);  // uniform over the block
  const int lane = threadIdx.x & 31;
  Keep fkeep;
  if (folded) {
    const Sel f = Advance(sc, sc.row[b.r].p[kRounds - 1], b.r, b.s, g.S, kRounds, &sc.row[b.r].p[kRounds], sm);
    const int cut_bin = f.found ? static_cast<int>(f.prefix & (kBins - 1)) : kBins;  // not found: Part::w holds all
    if (f.found) fkeep.cutoff = f.prefix;
    if (threadIdx.x < 32) {  // lane q: chunk q's weight sum, its bins' loads all in flight
      u64 w = 0;
      if (lane < g.S) {
        const u64* wb = sc.wbin + (static_cast<size_t>(b.r) * g.S + lane) * kBins;
        u64 v[kBins];
#pragma unroll
        for (int d = 0; d < kBins; ++d) v[d] = d >= cut_bin ? wb[d] : 0ull;
        w = pt[lane].w;
#pragma unroll
        for (int d = 0; d < kBins; ++d) w += v[d];
      }
      sm.wq[lane] = w;
    }
    __syncthreads();
  }
  // The chunks' partials one a lane (every warp folds them: no barrier).
  const bool have = lane < g.S;
  const int best = WarpFold(have ? pt[lane].best : INT_MAX, MinI());
  int best1 = WarpFold(have ? pt[lane].best1 : INT_MAX, MinI());
  const u64 tot = WarpFold(have ? pt[lane].tot : 0ull, Plus());
  const u64 wl = have ? (folded ? sm.wq[lane] : pt[lane].w) : 0ull;
  const u64 total = WarpFold(wl, Plus());
  const u64 start = WarpFold(lane < b.s ? wl : 0ull, Plus());
  const u64 mine = __shfl_sync(0xffffffffu, wl, b.s);
  const float log_z = b.m + static_cast<float>(log(static_cast<double>(tot) / static_cast<double>(kFix)));
  auto logprob = [&](int t) { return Clean(b.l[t], b.posinf) - log_z; };
  const Mode& md = b.md;
  if (md.greedy || (!md.top1 && total == 0)) {
    if (b.s == 0) write(best, logprob(best));
    return;
  }
  if (md.top1) {  // the lowest id at probability 1, unless p ** (1 / T) underflows there
    if (b.s == 0) {
      if (best1 == INT_MAX) best1 = best;  // (expf(0) is 1: not reached)
      const int t = Weight(best1, Clean(b.l[best1], b.posinf), b.m, md.inv_t, Keep()) > 0 ? best1 : best;
      write(t, logprob(t));
    }
    return;
  }
  u64 x = static_cast<u64>(b.it.uniform * static_cast<double>(total));
  if (x >= total) x = total - 1;
  if (!(start <= x && x < start + mine)) return;  // another chunk holds the draw
  const Keep keep = folded ? fkeep : (md.topk || md.topp) ? KeepOf(sc.row[b.r], md, true) : Keep();
  const int t = FindInChunk(b.l, b.c0, b.c1, x - start, [&](int i, float v) {
    return Weight(i, Clean(v, b.posinf), b.m, md.inv_t, keep);
  }, sm);
  const int token = t >= 0 ? t : best;
  write(token, logprob(token));
}

// The selection pass's resident blocks on the current device (cached per device).
int ResidentBlocks() {
  static std::atomic<int> cache[16];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) dev = 0;
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v > 0) return v;
  int sms = 132, per_sm = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, RoundKernel<true>, kT, 0) != cudaSuccess || per_sm < 1) per_sm = 1;
  cudaGetLastError();  // a failed query must not reach the caller's next check
  v = std::max(1, sms * per_sm);
  cache[dev].store(v, std::memory_order_relaxed);
  return v;
}

Geo GeoOf(int n, int V, int splits) { return GeoFor(n, V, ResidentBlocks(), splits); }

}  // namespace

int SampleSplits(int n, int V) { return GeoOf(n, V, 0).S; }

size_t SampleScratchBytes(int n, int V, int splits) {
  if (n <= 0) return 0;
  const Geo g = GeoOf(n, V, splits);
  return Align(sizeof(Part) * n * g.S) + Align(sizeof(u64) * 2 * n * g.S * kBins) + Align(sizeof(u64) * n * g.S * kBins) +
         Align(sizeof(RowState) * n);
}

unsigned SamplePasses(const SampleItem* items, int n, int V) {
  unsigned passes = 0;
  for (int i = 0; i < n; ++i) {
    const Mode md = ModeOf(items[i], V);
    if (md.topk) passes |= kSampleTopK;
    if (md.topp) passes |= kSampleTopP;
    if (md.topk && md.topp) passes |= kSampleTopKP;
    if (FoldsTopP(md)) passes |= kSampleTopPOnly;
  }
  return passes;
}

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  if (p.scratch == nullptr || p.V <= 0) return cudaErrorInvalidValue;
  const Geo g = GeoOf(p.n, p.V, p.splits);
  const Scratch sc = Carve(p.scratch, p.n, g.S);
  const dim3 grid(p.n, g.S);
  // Programmatic dependent launch where the step asks for it (few sessions: the launch
  // latency of each short pass overlaps the previous one's tail; kernels/launch.cuh).
  RWKVX_KLAUNCH(MaxKernel, grid, kT, 0, s, p, sc, g);
  if (p.passes & kSampleTopPOnly)
    RWKVX_KLAUNCH(StatsKernel<true>, grid, kT, 0, s, p, sc, g);
  else
    RWKVX_KLAUNCH(StatsKernel<false>, grid, kT, 0, s, p, sc, g);
  if (p.passes & kSampleTopK) {
    for (int r = 0; r < kRounds; ++r) RWKVX_KLAUNCH(RoundKernel<false>, grid, kT, 0, s, p, sc, g, r);
    RWKVX_KLAUNCH(TieKernel, grid, kT, 0, s, p, sc, g);
    RWKVX_KLAUNCH(TieCutKernel, grid, kT, 0, s, p, sc, g);
  }
  // Top-p-only rows take their round 0 in the sum pass and their weights in the last round:
  // round 0 runs for rows top-k restricts too, the weight pass only for those.
  if (p.passes & kSampleTopP)
    for (int r = (p.passes & kSampleTopKP) ? 0 : 1; r < kRounds; ++r)
      RWKVX_KLAUNCH(RoundKernel<true>, grid, kT, 0, s, p, sc, g, r);
  if (p.passes & kSampleTopK) RWKVX_KLAUNCH(WeightKernel, grid, kT, 0, s, p, sc, g);
  RWKVX_KLAUNCH(DrawKernel, grid, kT, 0, s, p, sc, g);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
