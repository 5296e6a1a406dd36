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
// The passes' bodies are in kernels/sample_passes.cuh (shared with the row form,
// kernels/sample_row.cu); here each is a kernel of its own.
#include "kernels/sample.cuh"

#include <algorithm>
#include <atomic>

#include "kernels/launch.cuh"
#include "kernels/sample_impl.cuh"
#include "kernels/sample_passes.cuh"

namespace rwkvx::kernels {

using namespace sample_detail;

namespace {

// The pass form's kernels: one a body of kernels/sample_passes.cuh, blocks of kT threads.
__global__ void __launch_bounds__(kT) MaxKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  MaxBody<kT>(p, sc, g, sm);
}

template <bool kRound0>
__global__ void __launch_bounds__(kT) StatsKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  __shared__ u64 h[kRound0 ? kBins : 1][kRound0 ? kT : 1];  // top-p's round-0 histogram (RoundKernel's)
  StatsBody<kT, kRound0>(p, sc, g, sm, kRound0 ? reinterpret_cast<u64 (*)[kT]>(&h[0][0]) : nullptr);
}

template <bool kMass>
__global__ void __launch_bounds__(kT) RoundKernel(SampleParams p, Scratch sc, Geo g, int round) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  __shared__ u64 h[kBins][kT];
  __shared__ u64 wb[kBins];
  RoundBody<kT, kMass>(p, sc, g, round, sm, h, wb);
}

__global__ void __launch_bounds__(kT) TieKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  TieBody<kT>(p, sc, g, sm);
}

__global__ void __launch_bounds__(kT) TieCutKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  TieCutBody<kT>(p, sc, g, sm);
}

__global__ void __launch_bounds__(kT) WeightKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  WeightBody<kT>(p, sc, g, sm);
}

__global__ void __launch_bounds__(kT) DrawKernel(SampleParams p, Scratch sc, Geo g) {
  PdlWait();  // first: before any memory access (kernels/launch.cuh)
  PdlTrigger();
  __shared__ Smem<kT> sm;
  DrawBody<kT>(p, sc, g, sm);
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
  if (p.row_threads != 0) return LaunchSampleRow(p, s);
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
