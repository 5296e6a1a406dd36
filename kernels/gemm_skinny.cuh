// Skinny products on tensor cores for steps of 5..32 rows (batched decode of a few dozen
// sessions): y[r, o] (+)= sum_i x[r, i] * w[o, i], the same products and outputs as the
// GEMV (kernels/gemv.cuh, same GemvParams: half or 8-bit weights with per-row scales,
// float or half outputs, activation, accumulate), for the row counts where the GEMV's FMA
// loop becomes bound by re-reading x and cuBLAS's tiles (built for many rows) read the
// weights at a fraction of the bandwidth, and where 8-bit weights would otherwise be
// dequantized to a half copy first.
//
// How: mma.sync m16n8k16 (fp16 or bf16 inputs, fp32 accumulation) with the weights as
// the 16-row A operand and up to 32 rows of x as four 8-column B tiles. A block of 8 warps
// owns 16 output rows; its warps take the K windows in turn (each lane one 16-byte load
// per weight row and window: 8 half weights or 16 8-bit codes, converted exactly), and
// the block adds the warps' partial sums in a fixed order: the result does not depend on
// timing, and each output row's sum is the same wherever the row sits in a group. An
// 8-bit row's sum is scaled once at the end. Needs in % 32 == 0 (half) or in % 64 == 0
// (8-bit); sm_80 or newer.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream. Params are plain values; every pointer is device
// memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/gemv.cuh"

namespace rwkvx::kernels {

constexpr int kSkinnyMinRows = 5, kSkinnyMaxRows = 32;
// More rows run as slabs of this many, each block one slab of one 16-row weight tile (the
// batch-invariant mode's projections, CudaBackendOptions::batch_invariant): a row's sums
// are the same bits whatever the row count and wherever the row sits.
constexpr int kSkinnySlabRows = 32;

// Whether a job can run here at all (input width a multiple of the K window; any rows
// >= 1, past kSkinnyMaxRows in slabs). Where it is the faster choice is the caller's
// policy (engine/cuda/gemm.cc).
inline bool SkinnyShapeFits(const GemvParams& p) {
  return p.rows >= 1 && p.in % (p.w_scale ? 64 : 32) == 0 && p.out >= 1;
}
// Whether a job runs in one slab (the batched-decode range).
inline bool SkinnyFits(const GemvParams& p) { return SkinnyShapeFits(p) && p.rows <= kSkinnyMaxRows; }

// Up to kGemvMaxJobs products of the same rows (and bf16) in one launch.
cudaError_t LaunchSkinnyGroup(const GemvGroupParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
