// The sampler's row form (SampleParams::row_threads): one block of NT threads a row runs
// every pass of kernels/sample_passes.cuh in one kernel. See kernels/sample.cuh.
#include <algorithm>
#include <atomic>

#include "kernels/launch.cuh"
#include "kernels/sample.cuh"
#include "kernels/sample_impl.cuh"
#include "kernels/sample_passes.cuh"

namespace rwkvx::kernels::sample_detail {

namespace {

// The row form: block r samples row r alone (S = 1), every pass of the pass form in turn
// with a block barrier between (what a pass wrote to scratch or shared memory, the next
// reads after it). The same bodies on the same chunk (the whole row) as the pass form
// split 1 ways: the same bits. Shared memory: Smem and the weights per bin static, the
// [kBins][NT] column histogram dynamic, followed by `cap` collected entries (keys, then
// ids; cap 0: no collection).
template <int NT>
__global__ void __launch_bounds__(NT) RowKernel(SampleParams p, Scratch sc, Geo g, int cap) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<NT> sm;
  __shared__ u64 wb[kBins];
  __shared__ int cand_n, cand_ok;
  __shared__ u64 cand_above;
  extern __shared__ u64 row_hist[];
  u64 (*h)[NT] = reinterpret_cast<u64 (*)[NT]>(row_hist);
  Collect col;
  col.key = reinterpret_cast<unsigned*>(row_hist + kBins * NT);
  col.id = reinterpret_cast<int*>(col.key + cap);
  col.cap = cap;
  col.n = &cand_n;
  col.ok = &cand_ok;
  col.above = &cand_above;
  if (threadIdx.x == 0) cand_n = 0, cand_ok = 0, cand_above = 0;  // read after MaxBody's barriers
  MaxBody<NT>(p, sc, g, sm);
  __syncthreads();
  if (p.passes & kSampleTopPOnly)
    StatsBody<NT, true>(p, sc, g, sm, h);
  else
    StatsBody<NT, false>(p, sc, g, sm, h);
  __syncthreads();
  if (p.passes & kSampleTopK) {
    for (int r = 0; r < kRounds; ++r) {
      RoundBody<NT, false>(p, sc, g, r, sm, h, wb);
      __syncthreads();
    }
    TieBody<NT>(p, sc, g, sm);
    __syncthreads();
    TieCutBody<NT>(p, sc, g, sm);
    __syncthreads();
  }
  if (p.passes & kSampleTopP) {
    for (int r = (p.passes & kSampleTopKP) ? 0 : 1; r < kRounds; ++r) {
      if (cap > 0 && r == 2)
        RoundBody<NT, true, true>(p, sc, g, r, sm, h, wb, &col);
      else if (r > 2 && cand_ok)  // a top-p-only row whose round-2 bin fitted
        CandRoundBody<NT>(p, sc, g, r, sm, h, wb, col);
      else
        RoundBody<NT, true>(p, sc, g, r, sm, h, wb);
      __syncthreads();
    }
  }
  if (p.passes & kSampleTopK) {
    WeightBody<NT>(p, sc, g, sm);
    __syncthreads();
  }
  DrawBody<NT>(p, sc, g, sm);
}
template <int NT>
constexpr size_t RowHistBytes() {
  return sizeof(u64) * kBins * NT;
}

// The row form with blocks of NT threads. Its dynamic shared memory (cached per device,
// the attribute set once): the column histogram, then as many collected entries (8 bytes
// each) as fit in the block's share of an SM, aiming at 1 block an SM at 512 threads and 2
// at 256 (what the registers allow); fewer than 256 entries: no collection.
template <int NT>
cudaError_t LaunchRow(const SampleParams& p, cudaStream_t s) {
  static std::atomic<int> cap_of[16];  // entries + 1 (0: not set yet)
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) dev = 0;
  int cap = cap_of[dev].load(std::memory_order_relaxed) - 1;
  if (cap < 0) {
    int optin = 0, per_sm = 0;
    cudaFuncAttributes fa{};
    cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e == cudaSuccess) e = cudaFuncGetAttributes(&fa, RowKernel<NT>);
    if (e != cudaSuccess) return e;
    const long blocks = NT >= 512 ? 1 : 2;
    const long budget = std::min<long>(optin, per_sm / blocks - 1024) - static_cast<long>(fa.sharedSizeBytes) -
                        static_cast<long>(RowHistBytes<NT>());
    if (budget < 0) return cudaErrorInvalidConfiguration;  // not even the histogram fits
    cap = static_cast<int>(budget / 8 / 32 * 32);
    if (cap < 256) cap = 0;
    e = cudaFuncSetAttribute(RowKernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(RowHistBytes<NT>() + 8ull * cap));
    if (e != cudaSuccess) return e;
    cap_of[dev].store(cap + 1, std::memory_order_relaxed);
  }
  const Geo g = GeoFor(p.n, p.V, 1, 1);  // one block a row: S = 1, the chunk the whole row
  const Scratch sc = Carve(p.scratch, p.n, g.S);
  const int use = p.row_collect ? cap : 0;
  RWKVX_KLAUNCH(RowKernel<NT>, dim3(p.n), NT, RowHistBytes<NT>() + 8ull * use, s, p, sc, g, use);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSampleRow(const SampleParams& p, cudaStream_t s) {
  // The row form's scratch (S = 1) fits in what SampleScratchBytes gives for any split.
  if (p.row_threads == 256) return LaunchRow<256>(p, s);
  if (p.row_threads == 512) return LaunchRow<512>(p, s);
  return cudaErrorInvalidValue;
}

}  // namespace rwkvx::kernels::sample_detail
