// Internals of kernels/sample.cu (the sampler's kernels; the public API is kernels/sample.cuh):
// the scratch layout, the per-row mode, block reductions, the chunk loops and the radix
// selection step the kernels share. Include from sample.cu only.
// Threads: device code, plus host helpers (GeoFor, Carve) called by the launcher on the
// thread that owns the stream.
#pragma once
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>

#include "kernels/sample.cuh"

namespace rwkvx::kernels::sample_detail {


constexpr int kT = 128;  // threads per block
constexpr int kWarps = kT / 32;
constexpr int kBits = 5, kBins = 1 << kBits;  // radix digit
constexpr int kRounds = 6;                    // probability bits 29..0 (p < 2: bits 31, 30 are 0)
constexpr int kMinChunk = 2048, kMaxSplits = 32;
constexpr float kFix = 1099511627776.0f;  // 2^40: fixed-point unit of a relative probability
using u64 = unsigned long long;

struct Part {  // one (row, split)
  float max;
  int best, best1;
  u64 tot, w, ties;
};
struct Sel {  // a radix selection before a round (after the last: the result)
  unsigned prefix;
  int found;
  u64 need;  // still to cover: tokens (top-k) or mass (top-p)
  u64 last;  // size of the bin the previous round chose (after the last: ties at the key)
};
struct RowState {
  Sel k[kRounds + 1], p[kRounds + 1];
  int tie_cut;
};
struct Scratch {
  Part* part;      // [n][S]
  u64* hist;       // [2][n][S][kBins], by round parity
  u64* wbin;       // [n][S][kBins]: top-p-only rows, the last round's per-bin draw weights
  RowState* row;   // [n]
};
struct Geo {
  int S, chunk;
};

struct Mode {
  float inv_t;
  bool greedy, top1, topk, topp;
};
__host__ __device__ inline Mode ModeOf(const SampleItem& it, int V) {
  Mode md;
  md.inv_t = static_cast<float>(1.0 / static_cast<double>(it.temperature));
  md.greedy = !(it.temperature > 0.f) || !(md.inv_t < FLT_MAX);
  md.top1 = !md.greedy && it.top_k == 1 && V > 1;
  md.topk = !md.greedy && !md.top1 && it.top_k > 1 && it.top_k < V;
  md.topp = !md.greedy && !md.top1 && it.top_p < 1.f;
  return md;
}
// A row that top-p restricts and top-k does not: the sum pass builds its first top-p
// histogram and its last top-p round sums its draw weights (no round-0 or weight pass).
__host__ __device__ inline bool FoldsTopP(const Mode& md) { return md.topp && !md.topk; }

inline size_t Align(size_t b) { return (b + 255) / 256 * 256; }

// Blocks a row is split over. forced > 0: that many (clamped). Else the split with the
// least estimated time: ceil(n * S / resident) waves of blocks, each streaming a chunk of
// V / S ids plus a fixed cost of ~3% of a whole row (a block's merges and reductions), so
// that n * S fills the card's resident blocks (`resident`: of the selection pass, the
// largest) without a nearly empty last wave (1024 rows at one block a row were two waves
// of 792 blocks on an H100), at most kMaxSplits a row and chunks of at least kMinChunk ids.
inline Geo GeoFor(int n, int V, int resident, int forced) {
  const int max_s = std::max(1, std::min(kMaxSplits, V / kMinChunk));
  n = std::max(n, 1);
  resident = std::max(resident, 1);
  int S = 1;
  if (forced > 0) {
    S = std::min(forced, max_s);
  } else {
    double best = 0;
    for (int s = 1; s <= max_s; ++s) {
      const double waves = static_cast<double>((static_cast<long long>(n) * s + resident - 1) / resident);
      const double t = waves * (0.03 + 1.0 / s);
      if (s == 1 || t < best) best = t, S = s;
    }
  }
  Geo g;
  g.chunk = ((V + S - 1) / S + 31) / 32 * 32;
  g.S = (V + g.chunk - 1) / g.chunk;
  return g;
}

inline Scratch Carve(void* base, int n, int S) {
  char* b = static_cast<char*>(base);
  Scratch sc;
  sc.part = reinterpret_cast<Part*>(b);
  b += Align(sizeof(Part) * n * S);
  sc.hist = reinterpret_cast<u64*>(b);
  b += Align(sizeof(u64) * 2 * n * S * kBins);
  sc.wbin = reinterpret_cast<u64*>(b);
  b += Align(sizeof(u64) * n * S * kBins);
  sc.row = reinterpret_cast<RowState*>(b);
  return sc;
}

struct Smem {
  float f[kWarps];
  int i[kWarps];
  u64 u[kWarps];
  u64 parts[kWarps][kBins];  // Advance: the merge's four partial sums
  u64 wq[kMaxSplits];  // the draw pass: each chunk's weight sum (top-p-only rows)
  Sel st;
  int token;
};

struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinI {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct Plus {
  __device__ u64 operator()(u64 a, u64 b) const { return a + b; }
};

// The fold of v over the warp's 32 lanes (every lane gets it). The per-chunk partials of a
// row (S <= 32 of them) are read one a lane and folded so: one load latency where a loop
// had several (ncu at B = 1, 32 chunks: a radix round ~8.2 -> ~7.4 us; H100, session 21).
template <class T, class Op>
__device__ __forceinline__ T WarpFold(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
static_assert(kMaxSplits <= 32, "a row's chunk partials are folded one a lane");
static_assert(kT == kWarps * kBins && kMaxSplits % kWarps == 0, "Advance merges a bin with one thread a warp");
static_assert(kBins == 32, "Advance selects the bin with one lane a bin");

// Reduction over the block (every thread gets it); contains __syncthreads.
template <class T, class Op>
__device__ T BlockReduce(T v, T* scratch, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T t = scratch[0];
  for (int w = 1; w < kWarps; ++w) t = op(t, scratch[w]);
  return t;
}

// The host Sampler's cleaning: NaN never wins; if some logit is +inf, the +inf tokens
// share all the probability (logit 0) and every other token gets -inf.
__device__ __forceinline__ float Clean(float x, bool posinf) {
  if (posinf) return x == INFINITY ? 0.f : -INFINITY;
  return isnan(x) ? -INFINITY : x;
}
__device__ __forceinline__ u64 Fix(float e) { return static_cast<u64>(e * kFix); }

// f(i, logit) for every id of [c0, c1), shared by kN threads of which this is thread t
// (each id once, by one thread, in no particular order: every caller folds with an
// order-free operation). A range that starts on a 16-byte boundary (rows of V % 4 == 0,
// as the world vocabulary; chunks and segments start at multiples of 32 ids) loads 16
// floats per thread per iteration as four float4; other ranges four floats at a time.
template <int kN, class F>
__device__ __forceinline__ void ForRange(const float* l, int c0, int c1, int t, F f) {
  int i = c0;
  if ((reinterpret_cast<size_t>(l + c0) & 15) == 0) {
    const float4* v = reinterpret_cast<const float4*>(l + c0);
    const int n4 = (c1 - c0) >> 2;
    int j = t;
    for (; j + 3 * kN < n4; j += 4 * kN) {
      float4 q[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) q[u] = v[j + u * kN];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int id = c0 + 4 * (j + u * kN);
        f(id, q[u].x);
        f(id + 1, q[u].y);
        f(id + 2, q[u].z);
        f(id + 3, q[u].w);
      }
    }
    for (; j < n4; j += kN) {
      const float4 q = v[j];
      const int id = c0 + 4 * j;
      f(id, q.x);
      f(id + 1, q.y);
      f(id + 2, q.z);
      f(id + 3, q.w);
    }
    i = c0 + 4 * n4;  // at most three ids left
  }
  i += t;
  for (; i + 3 * kN < c1; i += 4 * kN) {
    const float a = l[i], b = l[i + kN], c = l[i + 2 * kN], d = l[i + 3 * kN];
    f(i, a);
    f(i + kN, b);
    f(i + 2 * kN, c);
    f(i + 3 * kN, d);
  }
  for (; i < c1; i += kN) f(i, l[i]);
}
// The block's threads over the block's chunk.
template <class F>
__device__ __forceinline__ void ForChunk(const float* l, int c0, int c1, F f) {
  ForRange<kT>(l, c0, c1, static_cast<int>(threadIdx.x), f);
}

// The first id in [c0, c1) where the running sum of f(i, logit) in id order exceeds x
// (x < the chunk's sum); -1 if none. Each warp owns a contiguous segment: segment sums
// (all warps), then the warp holding x walks its segment in runs of 32 x 32 ids: lane j
// sums the run's j-th group of 32 ids (independent loads), a scan over the lanes finds the
// group holding x, and the warp scans that group. The dependent steps are one per run
// (~6 for a 5,000-id segment), not one per 32 ids. Call from all threads.
template <class F>
__device__ int FindInChunk(const float* l, int c0, int c1, u64 x, F f, Smem& sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int seg = ((c1 - c0 + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int w0 = min(c1, c0 + warp * seg), w1 = min(c1, w0 + seg);
  u64 part = 0;
  ForRange<32>(l, w0, w1, lane, [&](int i, float v) { part += f(i, v); });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
  if (threadIdx.x == 0) sm.token = -1;
  if (lane == 0) sm.u[warp] = part;
  __syncthreads();
  u64 base = 0;
  for (int w = 0; w < warp; ++w) base += sm.u[w];
  if (base <= x && x < base + part) {  // warp-uniform; exactly one warp
    auto scan = [&](u64 v) {           // inclusive, over the lanes
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const u64 up = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += up;
      }
      return v;
    };
    for (int g = w0; g < w1; g += 32 * 32) {  // warp-uniform loop and exit
      const int i0 = g + 32 * lane;
      u64 mine = 0;
#pragma unroll 8
      for (int k = 0; k < 32; ++k) {
        const int i = i0 + k;
        if (i < w1) mine += f(i, l[i]);
      }
      const u64 inc = scan(mine);
      const unsigned hit = __ballot_sync(0xffffffffu, base + inc > x);
      if (hit) {
        const int src = __ffs(hit) - 1;  // the group holding x
        base += __shfl_sync(0xffffffffu, inc - mine, src);
        const int i = g + 32 * src + lane;
        const u64 in_group = scan(i < w1 ? f(i, l[i]) : 0);
        const unsigned at = __ballot_sync(0xffffffffu, base + in_group > x);
        if (lane == 0) sm.token = at ? g + 32 * src + __ffs(at) - 1 : -1;
        break;
      }
      base += __shfl_sync(0xffffffffu, inc, 31);
    }
  }
  __syncthreads();
  return sm.token;
}

// The row's maximum from the chunks' (+inf rows: 0, with *posinf set).
// Call from all threads (warp shuffles).
__device__ float RowMax(const Scratch& sc, int r, int S, bool* posinf) {
  const int lane = threadIdx.x & 31;
  float m = lane < S ? sc.part[r * S + lane].max : -INFINITY;
  m = WarpFold(m, MaxF());
  *posinf = m == INFINITY;
  return *posinf ? 0.f : m;
}

// What every kernel starts from: the block's row, chunk and item, and (given the chunk
// maxima) the row's maximum m (-inf: everything banned) and +inf mode.
struct Blk {
  int r, s, c0, c1;
  SampleItem it;
  Mode md;
  float* l;
  float m = -INFINITY;
  bool posinf = false;
  __device__ Blk(const SampleParams& p, const Geo& g, const Scratch* sc) {
    r = blockIdx.x;
    s = blockIdx.y;
    c0 = s * g.chunk;
    c1 = min(p.V, c0 + g.chunk);
    it = p.items[r];
    md = ModeOf(it, p.V);
    l = p.logits + static_cast<size_t>(it.row) * p.V;
    if (sc) m = RowMax(*sc, r, g.S, &posinf);
  }
  // The probability's bits (the radix key) of a logit of this row.
  __device__ unsigned Key(float v) const { return __float_as_uint(expf(Clean(v, posinf) - m)); }
};

// Which tokens the draw keeps: top-k (key > kth, or == kth with id <= tie_cut) and top-p
// (key >= cutoff); keys are the probabilities' bits.
struct Keep {
  unsigned kth = 0, cutoff = 0;
  int tie_cut = INT_MAX;
  __device__ bool operator()(int i, unsigned key) const {
    return (key > kth || (key == kth && i <= tie_cut)) && key >= cutoff;
  }
};
__device__ Keep KeepOf(const RowState& rs, const Mode& md, bool with_top_p) {
  Keep k;
  if (md.topk) {
    const Sel& f = rs.k[kRounds];
    k.kth = f.prefix;
    if (f.need < f.last) k.tie_cut = rs.tie_cut;
  }
  if (with_top_p && md.topp && rs.p[kRounds].found) k.cutoff = rs.p[kRounds].prefix;
  return k;
}

// The draw's weight of a kept token of cleaned logit x and probability e = expf(x - m).
__device__ __forceinline__ u64 WeightE(float x, float e, float m, float inv_t) {
  return Fix(inv_t == 1.f ? e : expf((x - m) * inv_t));
}
// The draw's weight of token i: Fix(p ** (1 / T)) if kept, else 0.
__device__ __forceinline__ u64 Weight(int i, float x, float m, float inv_t, const Keep& keep) {
  const float e = expf(x - m);
  if (!keep(i, __float_as_uint(e))) return 0;
  return WeightE(x, e, m, inv_t);
}

// Top-p's selection before its first round: top_p of the row's whole mass (the chunks'
// sums from the sum pass), at least one unit. Call from all threads (warp shuffles).
__device__ inline Sel TopPStart(const Scratch& sc, int r, int S, float top_p) {
  const int lane = threadIdx.x & 31;
  const u64 tot = WarpFold(lane < S ? sc.part[r * S + lane].tot : 0ull, Plus());
  const double want = ceil(static_cast<double>(top_p) * static_cast<double>(tot));
  Sel st;
  st.prefix = 0;
  st.found = 1;
  st.last = 0;
  st.need = want < 1.0 ? 1ull : static_cast<u64>(want);
  return st;
}

// The block's histogram h (one column a thread) summed per bin and written as chunk s of
// row r for round `round` (by parity). Call from all threads after the columns are final.
static_assert(kT == 4 * kBins, "WriteHist sums each bin with four threads");
__device__ inline void WriteHist(const u64 (&h)[kBins][kT], const Scratch& sc, int r, int s, int S, int round) {
  // Bin t / 4 from four threads of 32 columns each (rotated by lane: no bank conflicts).
  const int bin = threadIdx.x >> 2, q = threadIdx.x & 3, lane = threadIdx.x & 31;
  u64 t = 0;
  for (int c = 0; c < 32; ++c) t += h[bin][q * 32 + ((c + lane) & 31)];
  t += __shfl_xor_sync(0xffffffffu, t, 1);
  t += __shfl_xor_sync(0xffffffffu, t, 2);
  u64* out = sc.hist + ((static_cast<size_t>(round & 1) * gridDim.x + r) * S + s) * kBins;
  if (q == 0) out[bin] = t;
}

// The selection after round `round - 1` (whose digit starts at bit `shift`): merge the
// chunks' histograms, take the highest bin where the running total reaches `need`.
// Block (r, 0) records it. Call from all threads.
__device__ Sel Advance(const Scratch& sc, const Sel& prev, int r, int s, int S, int round, Sel* slot, Smem& sm) {
  if (!prev.found) {  // top-p not reached: stays so (recorded for the later kernels)
    if (s == 0 && threadIdx.x == 0) *slot = prev;
    return prev;
  }
  const int shift = 30 - kBits * round;
  const u64* h = sc.hist + (static_cast<size_t>((round - 1) & 1) * gridDim.x + r) * S * kBins;
  {  // bin t % 32 over chunks t / 32, +4, ... (up to 8 loads a thread in flight), then the 4 parts
    const int bin = threadIdx.x & (kBins - 1), part = threadIdx.x / kBins;
    u64 t = 0;
#pragma unroll
    for (int q = 0; q < kMaxSplits / kWarps; ++q) {
      const int c = part + q * kWarps;
      t += c < S ? h[c * kBins + bin] : 0ull;
    }
    sm.parts[part][bin] = t;
  }
  __syncthreads();
  // Warp 0, lane b: bin b's merged count / mass m and the suffix sum suf = sum of bins >= b
  // (non-increasing in b); the selection is the highest bin with suf >= need (what a walk
  // from the top bin down finds), and the total above it suf - m. (Thread 0 walked the 32
  // bins one shared-memory load after another before: ncu at 256 rows, the five top-p
  // rounds 232 -> 204 us on an H100, session 23.)
  if (threadIdx.x < kBins) {
    const int lane = threadIdx.x;
    u64 m = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m += sm.parts[w][lane];
    u64 suf = m;
#pragma unroll
    for (int o = 1; o < kBins; o <<= 1) {
      const u64 v = __shfl_down_sync(0xffffffffu, suf, o);
      if (lane + o < kBins) suf += v;
    }
    const unsigned ok = __ballot_sync(0xffffffffu, suf >= prev.need);
    const int b = ok ? 31 - __clz(ok) : 0;
    const u64 mb = __shfl_sync(0xffffffffu, m, b), sb = __shfl_sync(0xffffffffu, suf, b);
    if (lane == 0) {
      Sel st = prev;
      if (!ok) {
        st.found = 0;  // top-p: the kept mass never reaches top_p (top-k always finds one)
      } else {
        st.prefix = prev.prefix | (static_cast<unsigned>(b) << shift);
        st.need = prev.need - (sb - mb);
        st.last = mb;
      }
      sm.st = st;
      if (s == 0) *slot = st;
    }
  }
  __syncthreads();
  return sm.st;
}

}  // namespace rwkvx::kernels::sample_detail
