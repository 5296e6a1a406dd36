#include <cfloat>
#include <climits>

#include "kernels/kernel_util.cuh"
#include "kernels/sample.cuh"

namespace rwkvx::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr float kFix = 1099511627776.0f;  // 2^40: fixed-point unit of a relative probability
using u64 = unsigned long long;

struct Smem {
  float f[kWarps];
  int i[kWarps];
  u64 u[kWarps];
  double d[kWarps];
  unsigned hist32[256];
  u64 hist64[256];
  unsigned prefix;
  int need, sel_count, found, tie_cut, token;
  u64 above;
};

struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct MinI {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct Plus {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Reduction over the block in a fixed order (warp butterflies, then warps in index order):
// the same inputs give the same result bit for bit. Every thread gets it.
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

// Exclusive prefix sum over threads in index order; `total` gets the block's sum.
template <class T>
__device__ T BlockExclusiveScan(T v, T* scratch, T* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  T before = 0, all = 0;
  for (int w = 0; w < kWarps; ++w) {
    if (w < warp) before += scratch[w];
    all += scratch[w];
  }
  *total = all;
  return before + inc - v;
}

// The host Sampler's cleaning: NaN never wins; if some logit is +inf, the +inf tokens
// share all the probability (logit 0) and every other token gets -inf.
__device__ __forceinline__ float Clean(float x, bool posinf_mode) {
  if (posinf_mode) return x == INFINITY ? 0.f : -INFINITY;
  return isnan(x) ? -INFINITY : x;
}

__device__ __forceinline__ u64 Fix(float e) { return static_cast<u64>(e * kFix); }

__global__ void __launch_bounds__(kThreads, 1) SampleKernel(SampleParams p) {
  __shared__ Smem sm;
  const SampleItem it = p.items[blockIdx.x];
  const int V = p.V, tid = threadIdx.x;
  float* l = p.logits + static_cast<size_t>(it.row) * V;

  // 1. Bans and penalties (each token at most once, so no two threads touch one logit).
  for (int a = tid; a < it.nadj; a += kThreads) {
    const int t = p.adj_tok[it.adj0 + a];
    const float v = p.adj_val[it.adj0 + a];
    if (t >= 0 && t < V) l[t] = (v == INFINITY) ? -INFINITY : l[t] - v;
  }
  __syncthreads();

  // 2. The maximum, the lowest id holding it, and the normaliser.
  float m = -INFINITY;
  for (int i = tid; i < V; i += kThreads) m = fmaxf(m, Clean(l[i], false));
  m = BlockReduce(m, sm.f, MaxF());
  const bool posinf = m == INFINITY;
  if (posinf) m = 0.f;
  if (m == -INFINITY) {  // everything banned: end of text with log-probability -inf
    if (tid == 0) {
      p.out_token[blockIdx.x] = 0;
      p.out_logprob[blockIdx.x] = -INFINITY;
    }
    return;
  }
  int best = INT_MAX;
  double s = 0.0;
  for (int i = tid; i < V; i += kThreads) {
    const float x = Clean(l[i], posinf);
    if (x == m && i < best) best = i;
    s += expf(x - m);
  }
  best = BlockReduce(best, sm.i, MinI());
  s = BlockReduce(s, sm.d, Plus());
  const float log_z = m + static_cast<float>(log(s));

  int token = best;
  const float inv_t = static_cast<float>(1.0 / static_cast<double>(it.temperature));
  if (it.temperature > 0.f && inv_t < FLT_MAX) {
    auto E = [&](int i) { return expf(Clean(l[i], posinf) - m); };
    // Per-thread contiguous ranges, for the passes that need id order.
    const int per = (V + kThreads - 1) / kThreads;
    const int lo = min(V, tid * per), hi = min(V, lo + per);

    // 3. Top-k: the k-th largest probability by radix selection over its bit pattern
    //    (non-negative floats order like their bits), 8 bits a pass; among ties at it,
    //    the lowest ids stay.
    unsigned kth = 0;
    int tie_cut = V;  // kept by top-k: key > kth, or key == kth and id <= tie_cut
    if (it.top_k > 0 && it.top_k < V) {
      unsigned prefix = 0, mask = 0;
      int need = it.top_k;
      for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += kThreads) sm.hist32[b] = 0;
        __syncthreads();
        for (int i = tid; i < V; i += kThreads) {
          const unsigned k = __float_as_uint(E(i));
          if ((k & mask) == prefix) atomicAdd(&sm.hist32[(k >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
          int acc = 0, b = 255;
          for (; b > 0; --b) {
            if (acc + static_cast<int>(sm.hist32[b]) >= need) break;
            acc += sm.hist32[b];
          }
          sm.need = need - acc;
          sm.prefix = prefix | (static_cast<unsigned>(b) << shift);
          sm.sel_count = sm.hist32[b];
        }
        __syncthreads();
        need = sm.need;
        prefix = sm.prefix;
        mask |= 255u << shift;
      }
      kth = prefix;
      if (need < sm.sel_count) {  // only the first `need` ties (in id order) stay
        int cnt = 0;
        for (int i = lo; i < hi; ++i) cnt += __float_as_uint(E(i)) == kth;
        int all = 0;
        const int start = BlockExclusiveScan(cnt, sm.i, &all);
        if (start < need && start + cnt >= need) {
          int r = start;
          for (int i = lo; i < hi; ++i)
            if (__float_as_uint(E(i)) == kth && ++r == need) {
              sm.tie_cut = i;
              break;
            }
        }
        __syncthreads();
        tie_cut = sm.tie_cut;
      }
    }
    auto kept_k = [&](int i, unsigned key) { return key > kth || (key == kth && i <= tie_cut); };

    // 4. Top-p: the cutoff is the largest probability v whose kept mass at or above v
    //    reaches top_p of the whole mass; radix selection over sums per bin.
    unsigned cutoff = 0;
    if (it.top_p < 1.f) {
      u64 tot = 0;
      for (int i = tid; i < V; i += kThreads) tot += Fix(E(i));
      tot = BlockReduce(tot, sm.u, Plus());
      const double want = ceil(static_cast<double>(it.top_p) * static_cast<double>(tot));
      const u64 target = want < 1.0 ? 1ull : static_cast<u64>(want);
      unsigned prefix = 0, mask = 0;
      u64 above = 0;
      bool found = true;
      for (int shift = 24; shift >= 0 && found; shift -= 8) {
        for (int b = tid; b < 256; b += kThreads) sm.hist64[b] = 0;
        __syncthreads();
        for (int i = tid; i < V; i += kThreads) {
          const float e = E(i);
          const unsigned k = __float_as_uint(e);
          if ((k & mask) == prefix && kept_k(i, k)) atomicAdd(&sm.hist64[(k >> shift) & 255u], Fix(e));
        }
        __syncthreads();
        if (tid == 0) {
          u64 acc = above;
          int b = 255;
          for (; b >= 0; --b) {
            if (acc + sm.hist64[b] >= target) break;
            acc += sm.hist64[b];
          }
          sm.found = b >= 0;
          sm.above = acc;
          sm.prefix = prefix | (static_cast<unsigned>(b < 0 ? 0 : b) << shift);
        }
        __syncthreads();
        found = sm.found;
        above = sm.above;
        prefix = sm.prefix;
        mask |= 255u << shift;
      }
      cutoff = found ? prefix : 0u;  // not reached (top-k kept too little): keep all kept
    }

    // 5. The draw: weights probs ** (1 / T) over the kept tokens, walked in id order.
    auto weight = [&](int i) -> u64 {
      const float x = Clean(l[i], posinf);
      const float e = expf(x - m);
      const unsigned k = __float_as_uint(e);
      if (!kept_k(i, k) || k < cutoff) return 0;
      return Fix(inv_t == 1.f ? e : expf((x - m) * inv_t));
    };
    u64 part = 0;
    for (int i = lo; i < hi; ++i) part += weight(i);
    u64 total = 0;
    const u64 start = BlockExclusiveScan(part, sm.u, &total);
    if (tid == 0) sm.token = best;
    __syncthreads();
    if (total > 0) {
      u64 x = static_cast<u64>(it.uniform * static_cast<double>(total));
      if (x >= total) x = total - 1;
      if (start <= x && x < start + part) {
        u64 acc = start;
        for (int i = lo; i < hi; ++i) {
          acc += weight(i);
          if (acc > x) {
            sm.token = i;
            break;
          }
        }
      }
    }
    __syncthreads();
    token = sm.token;
  }
  if (tid == 0) {
    p.out_token[blockIdx.x] = token;
    p.out_logprob[blockIdx.x] = Clean(l[token], posinf) - log_z;
  }
}

}  // namespace

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t s) {
  if (p.n == 0) return cudaSuccess;
  SampleKernel<<<p.n, kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
