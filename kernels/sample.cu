// The sampler's kernels (kernels/sample.cuh). Grid (row, split): block (r, s) owns ids
// [s * chunk, min(V, (s + 1) * chunk)) of row r. In launch order:
//   Max     adjustments and the mask in the chunk, the chunk's maximum (NaN cleaned)
//   Stats   the row's maximum from the chunks'; per chunk: the fixed-point mass, the lowest
//           id at the maximum (greedy), the lowest id whose probability rounds to 1 (top-k
//           1), the draw weights' sum for rows top-k / top-p leave alone
//   Round   (top-k, then top-p; 6 each) one radix digit of the k-th largest probability /
//           of the top-p cutoff: every block merges the previous round's per-chunk
//           histograms (fixed order, integers), advances the selection, and builds its
//           chunk's histogram of the next digit in per-thread shared-memory columns
//   Tie     top-k's final state; ties at the k-th value counted per chunk
//   TieCut  the block holding the last kept tie finds its id (id order)
//   Weight  per chunk the sum of the kept tokens' weights p ** (1 / T)
//   Draw    the block whose chunk holds the draw walks it in id order; one block per row
//           writes (token, logprob)
// Every cross-block quantity is an integer or a maximum, so the split changes no bit.
#include "kernels/sample.cuh"

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

__global__ void __launch_bounds__(kT) StatsKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  const Blk b(p, g, &sc);
  const float m = b.m;
  const bool posinf = b.posinf;
  if (m == -INFINITY) return;  // everything banned
  const bool plain = !b.md.greedy && !b.md.top1 && !b.md.topk && !b.md.topp;
  const Keep all;
  int best = INT_MAX, best1 = INT_MAX;
  u64 tot = 0, w = 0;
  ForChunk(b.l, b.c0, b.c1, [&](int i, float v) {
    const float x = Clean(v, posinf);
    const float e = expf(x - m);
    if (x == m) best = min(best, i);
    if (e == 1.f) best1 = min(best1, i);
    tot += Fix(e);
    if (plain) w += Weight(i, x, m, b.md.inv_t, all);
  });
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
// of the tokens top-k keeps).
template <bool kMass>
__global__ void __launch_bounds__(kT) RoundKernel(SampleParams p, Scratch sc, Geo g, int round) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem sm;
  __shared__ u64 h[kBins][kT];  // one column per thread: no atomics, no bank conflicts
  const Blk b(p, g, &sc);
  if (!(kMass ? b.md.topp : b.md.topk)) return;
  const float m = b.m;
  const bool posinf = b.posinf;
  if (m == -INFINITY) return;
  RowState& rs = sc.row[b.r];
  Sel* slots = kMass ? rs.p : rs.k;
  Sel st;
  if (round == 0) {
    st.prefix = 0;
    st.found = 1;
    st.last = 0;
    if (kMass) {  // target: top_p of the whole mass (before top-k), at least one unit
      u64 tot = 0;
      for (int q = 0; q < g.S; ++q) tot += sc.part[b.r * g.S + q].tot;
      const double want = ceil(static_cast<double>(b.it.top_p) * static_cast<double>(tot));
      st.need = want < 1.0 ? 1ull : static_cast<u64>(want);
    } else {
      st.need = static_cast<u64>(b.it.top_k);
    }
    if (b.s == 0 && threadIdx.x == 0) slots[0] = st;
  } else {
    st = Advance(sc, slots[round - 1], b.r, b.s, g.S, round, &slots[round], sm);
  }
  if (!st.found) return;
  const int shift = 30 - kBits * (round + 1);
  const unsigned above = ~0u << (shift + kBits);  // bits already selected
  const Keep keep = kMass ? KeepOf(rs, b.md, false) : Keep();
#pragma unroll
  for (int d = 0; d < kBins; ++d) h[d][threadIdx.x] = 0;
  ForChunk(b.l, b.c0, b.c1, [&](int i, float v) {
    const float e = expf(Clean(v, posinf) - m);
    const unsigned key = __float_as_uint(e);
    if ((key & above) != st.prefix) return;
    if (kMass && !keep(i, key)) return;
    h[(key >> shift) & (kBins - 1)][threadIdx.x] += kMass ? Fix(e) : 1ull;
  });
  __syncthreads();
  // Bin t / 4 from four threads of 32 columns each (rotated by lane: no bank conflicts).
  const int bin = threadIdx.x >> 2, q = threadIdx.x & 3, lane = threadIdx.x & 31;
  u64 t = 0;
  for (int c = 0; c < 32; ++c) t += h[bin][q * 32 + ((c + lane) & 31)];
  t += __shfl_xor_sync(0xffffffffu, t, 1);
  t += __shfl_xor_sync(0xffffffffu, t, 2);
  u64* out = sc.hist + ((static_cast<size_t>(round & 1) * gridDim.x + b.r) * g.S + b.s) * kBins;
  if (q == 0) out[bin] = t;
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
  u64 start = 0;
  for (int q = 0; q < b.s; ++q) start += pt[q].ties;
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
  if (!b.md.topk && !b.md.topp) return;
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
  int best = INT_MAX, best1 = INT_MAX;
  u64 tot = 0, total = 0, start = 0;
  for (int q = 0; q < g.S; ++q) {
    best = min(best, pt[q].best);
    best1 = min(best1, pt[q].best1);
    tot += pt[q].tot;
    total += pt[q].w;
    if (q < b.s) start += pt[q].w;
  }
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
  if (!(start <= x && x < start + pt[b.s].w)) return;  // another chunk holds the draw
  const Keep keep = (md.topk || md.topp) ? KeepOf(sc.row[b.r], md, true) : Keep();
  const int t = FindInChunk(b.l, b.c0, b.c1, x - start, [&](int i, float v) {
    return Weight(i, Clean(v, b.posinf), b.m, md.inv_t, keep);
  }, sm);
  const int token = t >= 0 ? t : best;
  write(token, logprob(token));
}

}  // namespace

namespace {
size_t ScratchFor(int n, int V) {
  if (n <= 0) return 0;
  const Geo g = GeoFor(n, V);
  return Align(sizeof(Part) * n * g.S) + Align(sizeof(u64) * 2 * n * g.S * kBins) + Align(sizeof(RowState) * n);
}
}  // namespace

size_t SampleScratchBytes(int n, int V, int group_rows) {
  if (group_rows <= 0 || group_rows >= n) return ScratchFor(n, V);
  return std::max(ScratchFor(group_rows, V), ScratchFor(n % group_rows, V));  // the full groups, the last
}

unsigned SamplePasses(const SampleItem* items, int n, int V) {
  unsigned passes = 0;
  for (int i = 0; i < n; ++i) {
    const Mode md = ModeOf(items[i], V);
    if (md.topk) passes |= kSampleTopK;
    if (md.topp) passes |= kSampleTopP;
  }
  return passes;
}

namespace {
// The passes over the rows of p (one group).
cudaError_t LaunchPasses(const SampleParams& p, cudaStream_t s) {
  const Geo g = GeoFor(p.n, p.V);
  const Scratch sc = Carve(p.scratch, p.n, g.S);
  const dim3 grid(p.n, g.S);
  // Programmatic dependent launch where the step asks for it (few sessions: the launch
  // latency of each short pass overlaps the previous one's tail; kernels/launch.cuh).
  RWKVX_KLAUNCH(MaxKernel, grid, kT, 0, s, p, sc, g);
  RWKVX_KLAUNCH(StatsKernel, grid, kT, 0, s, p, sc, g);
  if (p.passes & kSampleTopK) {
    for (int r = 0; r < kRounds; ++r) RWKVX_KLAUNCH(RoundKernel<false>, grid, kT, 0, s, p, sc, g, r);
    RWKVX_KLAUNCH(TieKernel, grid, kT, 0, s, p, sc, g);
    RWKVX_KLAUNCH(TieCutKernel, grid, kT, 0, s, p, sc, g);
  }
  if (p.passes & kSampleTopP)
    for (int r = 0; r < kRounds; ++r) RWKVX_KLAUNCH(RoundKernel<true>, grid, kT, 0, s, p, sc, g, r);
  if (p.passes & (kSampleTopK | kSampleTopP)) RWKVX_KLAUNCH(WeightKernel, grid, kT, 0, s, p, sc, g);
  RWKVX_KLAUNCH(DrawKernel, grid, kT, 0, s, p, sc, g);
  return cudaGetLastError();
}
}  // namespace

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  if (p.scratch == nullptr || p.V <= 0) return cudaErrorInvalidValue;
  const int G = p.group_rows > 0 ? p.group_rows : p.n;
  for (int g0 = 0; g0 < p.n; g0 += G) {  // each group's passes in turn (its rows stay in L2)
    SampleParams q = p;
    q.items = p.items + g0;
    q.n = std::min(G, p.n - g0);
    q.out_token = p.out_token + g0;
    q.out_logprob = p.out_logprob + g0;
    const cudaError_t e = LaunchPasses(q, s);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace rwkvx::kernels
