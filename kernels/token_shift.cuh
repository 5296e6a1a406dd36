// Token-shift mixes: for each row r of a step and each mix vector m,
//   out_m[r] = u[r] + (prev(r) - u[r]) * mix_m,
// prev(r) = u[r-1] inside the same item, the item's saved state for its first row.
// Then the item's state <- u[last row]. Rows of one item are consecutive.
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream (the CUDA backend's step). Params are plain values;
// every pointer is device memory owned by the caller and must outlive the kernel.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct TokenShiftParams {
  const float* u = nullptr;          // [rows, C] float32 (layer-normed input)
  const int* row_item = nullptr;     // [rows] item of each row
  const int* item_row0 = nullptr;    // [items] first row
  const int* item_len = nullptr;     // [items] rows
  float* const* item_state = nullptr;  // [items] base of each item's state block
  size_t state_off = 0;              // floats from the base to this layer's prev vector [C]
  const float* mix = nullptr;        // [n_mix, C]
  int n_mix = 1;
  void* out = nullptr;               // [n_mix, rows, C] fp16/bf16
  bool bf16 = false;
  int rows = 0, items = 0, C = 0;
};
cudaError_t LaunchTokenShift(const TokenShiftParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
