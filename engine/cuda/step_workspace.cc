// CudaBackend's step workspace: activations and scratch sized for the largest step so far
// (grown on demand, never shrunk), and its size formula for memory admission.
#include <algorithm>
#include <type_traits>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"

namespace rwkvx::cuda {

// Bytes that EnsureWorkspace allocates for these sizes (the same minimums and buffers).
size_t CudaBackend::WsBytes(int rows, int items, int logit_rows, size_t part_floats) const {
  rows = std::max(rows, 16);
  items = std::max(items, 16);
  logit_rows = std::max(logit_rows, 1);
  const size_t RC = static_cast<size_t>(rows) * C_;
  return 12 * RC * 4 + static_cast<size_t>(rows) * maxrank_ * 12 + static_cast<size_t>(rows) * F_ * 6 + 6 * RC * 2 +
         RC * 2 + static_cast<size_t>(logit_rows) * (V_ * 4 + C_ * 2) + part_floats * 4 + items * 16 * 4 + static_cast<size_t>(items) * H_ * 4 +
         (rows >= WkvChunkedMinLen() ? kWkvScratchBytes : 0);
}

absl::Status CudaBackend::EnsureWorkspace(int rows, int items, int logit_rows, size_t part_floats) {
  if (rows <= ws_.rows && items <= ws_.items && logit_rows <= ws_.logit_rows && part_floats <= ws_.part_floats)
    return absl::OkStatus();
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  DropGraphs();  // they hold workspace pointers
  for (void* p : ws_.allocs) RWKVX_CUDA_RETURN(cudaFree(p));
  ws_.allocs.clear();
  ws_.rows = std::max({rows, ws_.rows, 16});
  ws_.items = std::max({items, ws_.items, 16});
  ws_.logit_rows = std::max({logit_rows, ws_.logit_rows, 1});
  ws_.part_floats = std::max(part_floats, ws_.part_floats);
  const size_t RC = static_cast<size_t>(ws_.rows) * C_;
  bool failed = false;
  auto alloc = [&](size_t bytes, auto** out) {
    void* p = nullptr;
    if (failed || cudaMalloc(&p, std::max<size_t>(bytes, 16)) != cudaSuccess) {
      failed = true;
      cudaGetLastError();
      return;
    }
    ws_.allocs.push_back(p);
    *out = static_cast<std::remove_pointer_t<decltype(out)>>(p);
  };
  for (float** f : {&ws_.x, &ws_.u, &ws_.w, &ws_.a, &ws_.kk, &ws_.y, &ws_.g, &ws_.vfirst, &ws_.vg})
    alloc(RC * sizeof(float), f);
  alloc(3 * RC * sizeof(float), &ws_.r);  // r, k, v (q, k, v) RC apart: one batched projection
  if (!failed) {
    ws_.k = ws_.r + RC;
    ws_.v = ws_.r + 2 * RC;
  }
  alloc(static_cast<size_t>(ws_.rows) * maxrank_ * sizeof(float), &ws_.lora);
  alloc(4 * static_cast<size_t>(ws_.rows) * maxrank_ * 2, &ws_.lorah);  // w, a, v, g hidden layers
  alloc(static_cast<size_t>(ws_.rows) * F_ * sizeof(float), &ws_.ffn);
  alloc(static_cast<size_t>(ws_.rows) * F_ * 2, &ws_.ffnh);
  alloc(6 * RC * 2, &ws_.mixh);
  alloc(RC * 2, &ws_.yh);
  alloc(static_cast<size_t>(ws_.logit_rows) * V_ * sizeof(float), &ws_.logits);
  alloc(static_cast<size_t>(ws_.logit_rows) * C_ * 2, &ws_.headh);
  alloc(ws_.part_floats * sizeof(float), &ws_.part);
  alloc(static_cast<size_t>(ws_.items) * 16 * sizeof(int), &ws_.selected);
  alloc(static_cast<size_t>(ws_.items) * H_ * sizeof(unsigned), &ws_.tickets);
  ws_.wkv = nullptr;
  if (ws_.rows >= WkvChunkedMinLen()) alloc(kWkvScratchBytes, &ws_.wkv);
  if (failed) {
    for (void* p : ws_.allocs) cudaFree(p);
    ws_ = Ws{};
    return absl::ResourceExhaustedError("GPU memory exhausted while allocating the step workspace");
  }
  // The merge counters start at zero; attn_decode leaves them at zero.
  RWKVX_CUDA_RETURN(cudaMemsetAsync(ws_.tickets, 0, static_cast<size_t>(ws_.items) * H_ * sizeof(unsigned), stream_));
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
