// The RWKV-7 recurrence of kernels/wkv7.cuh in chunked form, for prefill of few sessions
// (where the sequential kernel has one block per (item, head) and leaves most SMs idle).
// Per head, with M_t = diag(w_t) - kk_t (kk_t*a_t)^T, one token is S <- S M_t + v_t k_t^T and
// y_t = S_t r_t. Over a chunk of L tokens from a state S0:
//   S_t = S0 X_t + D_t,   X_t = M_1 ... M_t (X_0 = I),   D_t = D_{t-1} M_t + v_t k_t^T (D_0 = 0)
//   y_t = S0 (X_t r_t) + D_t r_t = S0 Q_t + y0_t
// Pass A computes, for every chunk at once (no dependence between chunks), X_L (P), D_L (D),
// Q_t and y0_t: two runs of the token recurrence, from I with v = 0 and from 0 with v, or
// (matrix_pass_a) the same four from 64 x 64 matrix products and one triangular inverse.
// Pass B walks the chunks of each (item, head) in order, S <- S P + D, keeping each chunk's
// start state S_c; pass C, again parallel over chunks, writes y_t = S_c Q_t + y0_t.
// float32 throughout; the X_t are products of contractions (|w| < 1, |kk| = 1, 0 <= a <= 1),
// so nothing grows. The result differs from the sequential kernel by float rounding only.
// Items are processed in segments of `seg_chunks` chunks (bounded scratch): the launcher
// loops over segments; state is read and written by pass B in the items' state blocks
// (transposed layout, as in wkv7.cuh). The launcher may be called from any host thread; the
// caller owns every buffer and keeps them alive until the stream has run the launches.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

#include "kernels/wkv7.cuh"

namespace rwkvx::kernels {

constexpr int kWkv7ChunkLen = 64;  // tokens per chunk (L)
// Scratch floats per (item, chunk, head): P and D [64*64] each, Q and y0 [L*64] each.
constexpr size_t kWkv7ChunkFloats = 2 * 64 * 64 + 2 * kWkv7ChunkLen * 64;

struct Wkv7ChunkedParams {
  Wkv7Params base;          // inputs, outputs, items and state as for LaunchWkv7
  int max_len = 0;          // longest item of the step (rows)
  float* scratch = nullptr;  // [items][seg_chunks][H] * kWkv7ChunkFloats floats
  int seg_chunks = 0;       // chunks per item per segment (>= 1)
  int sm_count = 132;       // the device's SMs: pass B splits an (item, head) over up to 4
                            // blocks while that keeps at most 2 blocks per SM
  // Pass A as 64 x 64 matrix products on tensor cores in 3xTF32 (one block a chunk and head;
  // needs ~205 KB of shared memory: sm_90; elsewhere the token loop runs) rather than two
  // runs of the token loop; float32 rounding only, not the token loop's bits
  // (bench/engine/pending/wkv7_chunk_matrix_form.py). Needs every decay's running product
  // over a chunk inside float32 (RWKV-7's w > 0.545: > 1e-17 over 64 tokens).
  bool matrix_pass_a = false;
};
// Floats of scratch needed for `items` items with segments of `seg_chunks` chunks.
inline size_t Wkv7ChunkedScratchFloats(int items, int seg_chunks, int H) {
  return static_cast<size_t>(items) * seg_chunks * H * kWkv7ChunkFloats;
}
cudaError_t LaunchWkv7Chunked(const Wkv7ChunkedParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
