// Skinny products for decode steps with at most 4 rows: y[r, o] (+)= sum_i x[r, i] * w[o, i]
// (w a torch Linear weight [out, in] in fp16/bf16, or 8-bit (E4M3 or int8) with a scale
// per output row, kernels/fp8.cuh; x the half GEMM input, fp32 accumulation, an 8-bit row's sum
// scaled once at the end). cuBLAS takes ~6 us per such launch on an H100 whatever the size (its
// tiles are built for many rows); one warp per output row streaming 16-byte loads is
// bound by the weight bytes instead.
//
// A group runs up to kGemvMaxJobs independent products (same rows) in one launch: a
// decode step's r/k/v projections and the LoRA down-projections share one launch, the
// LoRA up-projections another. Each job may apply an activation before a half store
// (the LoRA hidden layers, the channel mix's relu^2), exactly as LaunchActivation would
// on the float result. Every output is computed the same way alone or in a group.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/activation.cuh"

namespace rwkvx::kernels {

struct GemvParams {
  const void* x = nullptr;  // [rows, in] fp16/bf16
  const void* w = nullptr;  // [out, in] fp16/bf16, or 8-bit codes when w_scale is set
  // Per-output-row scales of an 8-bit weight (kernels/fp8.cuh: w ~ decode(q) * scale); null
  // for a half weight. Needs in % 16 == 0.
  const float* w_scale = nullptr;
  bool w_int8 = false;      // with w_scale: the codes are int8 (W8::kInt8), else E4M3
  float* y = nullptr;       // [rows, out] float32 (or null)
  void* y_half = nullptr;   // [rows, out] fp16/bf16 (when y is null)
  bool accumulate = false;  // y += instead of y = (float32 output only)
  Act act = Act::kNone;     // applied before a half store (y_half only)
  bool bf16 = false;
  int rows = 0, out = 0, in = 0;  // rows <= 4, in % 8 == 0
  // With GemvGroupParams::fold: which of the fold's vectors is this job's x (x is then not
  // read): -1 the normed row y itself, m >= 0 the token-shift mix m, y + (prev - y) * mix[m].
  int fold_mix = -1;
  // Warps summing each output row (1, 2 or 4): with K > 1 a block's 8 warps take 8 / K
  // rows, warp q of a row the 16-byte weight loads q, q + K, ... of each lane's run, and the
  // K warp sums are added in q order (a fixed order: the same bits every run, in a group or
  // alone; other bits than K = 1). K times the blocks and 1 / K the serial loads a lane:
  // for wide inputs with few outputs (the 0.2B's 3072 -> 768 channel-mix value: 96 blocks of
  // 12 loads a lane at K = 1). CudaBackendOptions::gemv_split picks it. A group whose jobs
  // differ in K runs as a launch per K (each kernel is built for one K, so that K = 1 is the
  // plain kernel's code: a runtime K measured 1.10x the time of a 0.2B step, H100).
  int ksplit = 1;
};
constexpr int kGemvMaxRows = 4;
cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t s);

// A decode step's LayerNorm (and its token-shift mixes) folded into the prologue of the
// GEMV group that reads its outputs (CudaBackendOptions::fold_layernorm): every block
// normalizes the step's rows itself (kernels/layernorm_row.cuh: the LayerNorm kernel's
// arithmetic, the same bits: CudaFoldLayerNorm, passed on an H100) into shared memory as
// its jobs' x, and block 0 also writes
// the normed rows y to y_out. The token-shift state (prev <- y) cannot be written here
// (other blocks still read prev): the next GEMV group copies y_out into it (GemvSave).
// Row r is item r (decode). C <= kGemvFoldMaxC; every job's in == C.
constexpr int kGemvFoldMaxC = 4096;
struct GemvFold {
  const float* x = nullptr;     // [rows, C] float32 residual rows
  const float* w = nullptr;     // [C] LayerNorm weight
  const float* b = nullptr;     // [C] LayerNorm bias
  float eps = 1e-5f;
  int C = 0;
  const float* mix = nullptr;   // [n_mix, C] token-shift mixes (jobs with fold_mix >= 0)
  float* const* item_state = nullptr;  // [rows] state blocks: prev at + state_off
  size_t state_off = 0;
  float* y_out = nullptr;       // [rows, C] float32: y, written by block 0
  // Output rows a warp takes in turn (1..16): wide rows (3.6B's 2560) are normalized by
  // every block, so fewer, fuller blocks there. The same sums for every output either way.
  int outs_per_warp = 1;
};
// Rows copied into the items' state before the group's products (block 0): the token-shift
// state the previous group's fold could not write.
struct GemvSave {
  const float* src = nullptr;   // [rows, C]
  float* const* item_state = nullptr;
  size_t state_off = 0;
  int C = 0;
};

constexpr int kGemvMaxJobs = 8;
struct GemvGroupParams {
  GemvParams job[kGemvMaxJobs];  // rows and bf16 of job[0] hold for all
  int n_jobs = 0;
  GemvFold fold;  // fold.x set: the jobs' x come from the folded LayerNorm
  GemvSave save;  // save.src set (not with fold): copy rows into the state first
  // Each warp asks L2 for its weight rows before the PDL wait (CudaBackendOptions::
  // gemv_prefetch): with programmatic dependent launch the group's blocks start while the
  // kernel before it still runs, and no kernel writes the weights, so their DRAM reads
  // overlap that kernel instead of following it. The same loads afterwards: the same bits.
  bool prefetch_w = false;
  // The accumulating jobs' old y values (y += ...) are loaded before the PDL wait (not with
  // fold or save): their latency overlaps the kernel before instead of following each
  // warp's sum (a kernel instance of its own). Set only where the kernel right before the
  // group does not write those y
  // (kernels/launch.cuh; the backend's residual adds: the residual rows were last written
  // two or more launches back). The same sums, the same bits.
  bool y_early = false;
};
cudaError_t LaunchGemvGroup(const GemvGroupParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
