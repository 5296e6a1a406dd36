// Page-table updates of a step: entry i writes `val[i]` to the device table slot `dst[i]`
// (the KV page tables of kernels/attn_item.cuh, kept on the device and changed only where
// the host's copy changed: new pages, copy-on-write replacements, compaction targets).
// Threads: the launcher enqueues on the caller's stream and returns at once; call it from
// the thread that owns that stream. Every pointer is device memory owned by the caller.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

struct PageTableUpdateParams {
  void** const* dst = nullptr;  // [n] slots to write
  void* const* val = nullptr;   // [n] page pointers
  int n = 0;
};
cudaError_t LaunchPageTableUpdate(const PageTableUpdateParams& p, cudaStream_t s);

}  // namespace rwkvx::kernels
