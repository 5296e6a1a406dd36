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
};
constexpr int kGemvMaxRows = 4;
cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t s);

constexpr int kGemvMaxJobs = 8;
struct GemvGroupParams {
  GemvParams job[kGemvMaxJobs];  // rows and bf16 of job[0] hold for all
  int n_jobs = 0;
};
cudaError_t LaunchGemvGroup(const GemvGroupParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
