// LayerNorm over rows of C floats: out = (x - mean) / sqrt(var + eps) * w + b.
// Optionally gathers rows (row_index) and writes a float32 and/or a half copy.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct LayerNormParams {
  const float* x = nullptr;         // [*, C] float32
  const int* row_index = nullptr;   // optional: out row r reads x row row_index[r]
  const float* w = nullptr;         // [C]
  const float* b = nullptr;         // [C]
  float* out = nullptr;             // optional [rows, C] float32 (may alias x without row_index)
  void* out_half = nullptr;         // optional [rows, C] fp16/bf16
  bool bf16 = false;                // type of out_half and mix_out
  // Decode fusion of the token-shift mixes (kernels/token_shift.cuh) when every item of the
  // step has one row and row r is item r: with y the normed row and prev the item's saved
  // vector, mix_out[m, r] = y + (prev - y) * mix[m] for m < n_mix, then prev <- y.
  // Same arithmetic as LayerNorm followed by LaunchTokenShift (decode steps use this; the
  // separate token-shift launch serves steps with longer items). With `early` below the
  // saved vectors are read before waiting for the kernel before (kernels/launch.cuh): that
  // kernel must not write them.
  const float* mix = nullptr;        // [n_mix, C]; null: no fusion
  int n_mix = 0;
  void* mix_out = nullptr;           // [n_mix, rows, C] fp16/bf16
  float* const* item_state = nullptr;  // [rows] base of each item's state block ([items]: LaunchLayerNormShiftRows)
  size_t state_off = 0;              // floats from the base to this layer's prev vector
  int rows = 0, C = 0;
  float eps = 1e-5f;
  // The decode kernels (register and slice forms) read the weights, the mixes and the
  // saved vectors before their PDL wait, so that those loads overlap the kernel before
  // (kernels/launch.cuh: that kernel must not write them); false: every load after the
  // wait. The same loads: the same bits. The backend sets it in PDL steps of small models
  // (CudaBackendOptions::early_reads).
  bool early = false;
};
cudaError_t LaunchLayerNorm(const LayerNormParams& p, cudaStream_t s);

// The token-shift fusion for steps whose items have several rows (prefill, mixed steps):
// with the items' rows as kernels/token_shift.cuh takes them (rows of one item
// consecutive), prev(r) is row r - 1's normed row inside its item and the item's saved
// vector (p.item_state[item] + p.state_off) for its first row, and the saved vector becomes
// the item's last normed row: LayerNorm followed by LaunchTokenShift, the same bits, in one
// launch and without the float32 copy of the normed rows. p needs the mixes (at most 6) and
// no out, out_half or row_index; up to kLnShiftRowsMaxC columns. (A separate argument, so
// that LayerNormParams, which every other LayerNorm kernel takes, keeps its layout.)
struct LayerNormItems {
  const int* row_item = nullptr;   // [rows] item of each row
  const int* item_row0 = nullptr;  // [items] first row
  const int* item_len = nullptr;   // [items] rows
};
constexpr int kLnShiftRowsMaxC = 16 * 256;  // 16 columns a thread
cudaError_t LaunchLayerNormShiftRows(const LayerNormParams& p, const LayerNormItems& items, cudaStream_t s);

}  // namespace rwkvx::kernels
