// The sampler's passes as device bodies (kernels/sample.cu lists them in launch order),
// templated on the block's threads NT. The pass form (kernels/sample.cu: kT = 128 threads,
// a kernel a pass, each row split over blocks) wraps each body in a kernel of its own; the
// row form (kernels/sample_row.cu: one block of NT threads a row) runs them in turn with a
// block barrier between. A body's early returns are uniform over its block. Include from
// sample.cu and sample_row.cu only.
#pragma once
#include <cooperative_groups.h>

#include "kernels/sample_impl.cuh"

namespace rwkvx::kernels::sample_detail {

template <int NT>
__device__ void MaxBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm) {
  const Blk b(p, g, nullptr);
  // Bans and penalties in this chunk (each token at most once: no two threads share one).
  for (int a = threadIdx.x; a < b.it.nadj; a += NT) {
    const int t = p.adj_tok[b.it.adj0 + a];
    const float v = p.adj_val[b.it.adj0 + a];
    if (t >= b.c0 && t < b.c1) b.l[t] = (v == INFINITY) ? -INFINITY : b.l[t] - v;
  }
  if (b.it.mask0 >= 0) {  // the grammar's mask (structured output), after the adjustments
    __syncthreads();
    const unsigned* mk = p.mask + b.it.mask0;
    for (int i = b.c0 + threadIdx.x; i < b.c1; i += NT) {
      const int w = i >> 5;
      if (w >= b.it.nmask || !((mk[w] >> (i & 31)) & 1u)) b.l[i] = -INFINITY;
    }
  }
  __syncthreads();
  float m = -INFINITY;
  ForChunk<NT>(b.l, b.c0, b.c1, [&](int, float x) { m = fmaxf(m, Clean(x, false)); });
  m = BlockReduce(m, sm.f, MaxF());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].max = m;
}

// kRound0: some row of the launch is top-p-only (kSampleTopPOnly) and takes its round-0
// histogram here; without it the kernel keeps its small shared memory (greedy and plain
// steps: more blocks an SM).
// h: [kBins][NT] shared (kRound0 only).
template <int NT, bool kRound0>
__device__ void StatsBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm, u64 (*h)[NT]) {
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
  ForChunk<NT>(b.l, b.c0, b.c1, [&](int i, float v) {
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
      WriteHist<NT>(h, sc, b.r, b.s, g.S, 0);
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
// The row form's collection (SampleParams::row_collect): the ids of a top-p-only row's
// round-2 bin, their keys (the probabilities' bits), in shared memory, so that rounds 3-5
// read those few entries instead of the whole row (CandRoundBody).
struct Collect {
  unsigned* key = nullptr;  // [cap]
  int* id = nullptr;        // [cap]
  int cap = 0;
  int* n = nullptr;         // shared: entries wanted (more than cap: overflowed, not used)
  int* ok = nullptr;        // shared: 1 once a round 2 collected every entry of the bin
  u64* above = nullptr;     // shared: the draw weights of the ids above the bin
};

// h: [kBins][NT] shared, one column per thread (no atomics, no bank conflicts); wb:
// [kBins] shared, the last round of a top-p-only row: weights per bin. kCollect (the row
// form's round 2, *col->n zero on entry): a top-p-only row whose selection stands also
// lists the ids of the selected bin in *col and sums the weights of the ids above it;
// *col->ok says whether all of them fit.
template <int NT, bool kMass, bool kCollect = false>
__device__ void RoundBody(const SampleParams& p, const Scratch& sc, const Geo& g, int round, Smem<NT>& sm, u64 (*h)[NT],
                          u64* wb, const Collect* col = nullptr) {
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
  const bool collect = kCollect && folded && st.found && !weigh;  // uniform over the block
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
  ForChunk<NT>(b.l, b.c0, b.c1, [&](int i, float v) {
    const float x = Clean(v, posinf);
    const float e = expf(x - m);
    const unsigned key = __float_as_uint(e);
    if (!st.found) {  // weigh only: the cutoff stays 0, every token is kept
      wa += WeightE(x, e, m, inv_t);
      return;
    }
    const unsigned hi = key & above;
    if (hi != st.prefix) {
      if ((weigh || collect) && hi > st.prefix) wa += WeightE(x, e, m, inv_t);
      return;
    }
    if (kMass && !keep(i, key)) return;
    const int bin = (key >> shift) & (kBins - 1);
    h[bin][threadIdx.x] += kMass ? Fix(e) : 1ull;
    if (weigh) atomicAdd(&wb[bin], WeightE(x, e, m, inv_t));  // integers: any order
    if constexpr (kCollect) {
      if (collect) {  // one shared atomic a group of lanes here together; the order is free
        namespace cg = cooperative_groups;
        const cg::coalesced_group grp = cg::coalesced_threads();
        int base = 0;
        if (grp.thread_rank() == 0) base = atomicAdd(col->n, static_cast<int>(grp.size()));
        const int pos = grp.shfl(base, 0) + static_cast<int>(grp.thread_rank());
        if (pos < col->cap) {
          col->key[pos] = key;
          col->id[pos] = i;
        }
      }
    }
  });
  __syncthreads();
  if (st.found) WriteHist<NT>(h, sc, b.r, b.s, g.S, round);
  if (collect) {
    wa = BlockReduce(wa, sm.u, Plus());
    if (threadIdx.x == 0) {
      *col->above = wa;
      *col->ok = *col->n <= col->cap;
    }
  }
  if (weigh) {
    wa = BlockReduce(wa, sm.u, Plus());
    if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].w = wa;
    if (threadIdx.x < kBins) sc.wbin[(static_cast<size_t>(b.r) * g.S + b.s) * kBins + threadIdx.x] = wb[threadIdx.x];
  }
}
// Rounds 3-5 of a top-p-only row from the row form's collection (the ids of round 2's bin,
// *col.ok): what RoundBody computes from the whole row, since no id outside the bin can
// match a longer prefix, and the last round's weights above the prefix are the collected
// entries' above it plus *col.above.
template <int NT>
__device__ void CandRoundBody(const SampleParams& p, const Scratch& sc, const Geo& g, int round, Smem<NT>& sm,
                              u64 (*h)[NT], u64* wb, const Collect& col) {
  const Blk b(p, g, &sc);
  const float m = b.m;
  const bool posinf = b.posinf;
  Sel* slots = sc.row[b.r].p;
  const Sel st = Advance(sc, slots[round - 1], b.r, b.s, g.S, round, &slots[round], sm);  // found: round 2's stood
  const bool weigh = round == kRounds - 1;
  const int shift = 30 - kBits * (round + 1);
  const unsigned above = ~0u << (shift + kBits);
  const float inv_t = b.md.inv_t;
#pragma unroll
  for (int d = 0; d < kBins; ++d) h[d][threadIdx.x] = 0;
  if (weigh) {
    if (threadIdx.x < kBins) wb[threadIdx.x] = 0;
    __syncthreads();
  }
  u64 wa = 0;
  const int n = *col.n;
  for (int k = threadIdx.x; k < n; k += NT) {
    const unsigned key = col.key[k];
    const float e = __uint_as_float(key);  // expf(x - m) as round 2 computed it
    const unsigned hi = key & above;
    if (hi != st.prefix) {
      if (weigh && hi > st.prefix) wa += WeightE(Clean(b.l[col.id[k]], posinf), e, m, inv_t);
      continue;
    }
    const int bin = (key >> shift) & (kBins - 1);
    h[bin][threadIdx.x] += Fix(e);
    if (weigh) atomicAdd(&wb[bin], WeightE(Clean(b.l[col.id[k]], posinf), e, m, inv_t));
  }
  __syncthreads();
  WriteHist<NT>(h, sc, b.r, b.s, g.S, round);
  if (weigh) {
    wa = BlockReduce(wa, sm.u, Plus());
    if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].w = wa + *col.above;
    if (threadIdx.x < kBins) sc.wbin[(static_cast<size_t>(b.r) * g.S + b.s) * kBins + threadIdx.x] = wb[threadIdx.x];
  }
}


template <int NT>
__device__ void TieBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm) {
  const Blk b(p, g, &sc);
  if (!b.md.topk || b.m == -INFINITY) return;
  RowState& rs = sc.row[b.r];
  const Sel f = Advance(sc, rs.k[kRounds - 1], b.r, b.s, g.S, kRounds, &rs.k[kRounds], sm);
  if (!(f.need < f.last)) return;  // every token at the k-th value stays
  u64 n = 0;
  ForChunk<NT>(b.l, b.c0, b.c1, [&](int, float v) { n += b.Key(v) == f.prefix; });
  n = BlockReduce(n, sm.u, Plus());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].ties = n;
}

// The block whose chunk holds the last kept tie (ties in id order) records its id.
template <int NT>
__device__ void TieCutBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm) {
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

template <int NT>
__device__ void WeightBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm) {
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
  ForChunk<NT>(b.l, b.c0, b.c1, [&](int i, float v) { w += Weight(i, Clean(v, posinf), m, b.md.inv_t, keep); });
  w = BlockReduce(w, sm.u, Plus());
  if (threadIdx.x == 0) sc.part[b.r * g.S + b.s].w = w;
}

template <int NT>
__device__ void DrawBody(const SampleParams& p, const Scratch& sc, const Geo& g, Smem<NT>& sm) {
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

}  // namespace rwkvx::kernels::sample_detail
