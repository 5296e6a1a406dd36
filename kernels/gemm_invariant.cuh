// Tiled products for many rows with the skinny kernel's bits (kernels/gemm_skinny.cuh), for
// the batch-invariant mode's prefills (CudaBackendOptions::batch_invariant): y[r, o] (+)=
// sum_i x[r, i] * w[o, i] with half weights, where each output is summed exactly as the
// skinny kernel sums it, so a row gives the same bits here as in a decode step of one.
//
// The skinny kernel's order for output (o, r): K windows of 32 columns; warp w of its block
// chains `mma.sync m16n8k16` over windows w, w + 8, w + 16, ... (two MMA steps a window,
// with its fixed map of columns onto the fragment's k indices), from zero; the block then
// adds the eight warps' sums in warp order to 0. This kernel computes 64 outputs x 128 rows
// a block (8 warps, 32 x 32 each) and walks the windows in that same order, w = 0..7 and
// for each w its windows, staged through shared memory (cp.async, two stages): a warp's
// accumulators restart at zero for each w and are then added to the running total, in w
// order. The MMA is deterministic for the same operands and accumulator, so every output
// is the same float as the skinny kernel's (test: tests/cuda/gemm_skinny_test.cc
// InvariantGemmEqualsSkinny, passed on an H100 in session 19).
// Needs half weights, in % 32 == 0; any rows >= 1; sm_80 or newer.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream. Params are plain values; every pointer is device
// memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/gemv.cuh"

namespace rwkvx::kernels {

// Whether a job can run here (half weights, input width a multiple of the window).
inline bool InvariantGemmFits(const GemvParams& p) {
  return !p.w_scale && p.rows >= 1 && p.out >= 1 && p.in % 32 == 0;
}

// Up to kGemvMaxJobs products of the same rows (and bf16) in one launch.
cudaError_t LaunchInvariantGemm(const GemvGroupParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
