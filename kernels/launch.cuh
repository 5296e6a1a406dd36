// Kernel launches with programmatic dependent launch (PDL, sm_90+): a kernel launched
// through Launch may be scheduled while the kernel before it in the stream is still
// running, so that its launch latency and block start-up overlap that kernel's tail. Every
// kernel launched this way calls PdlWait() before it writes global memory or reads what
// the kernel right before it may write (the wait returns once the previous grid has
// completed and its writes are visible), then PdlTrigger() to let the next kernel be
// scheduled in turn. Because no kernel triggers before its own wait returns, a kernel can
// only start once the kernel two launches before it has completed: memory that the kernel
// right before does not write (weights, a layer's recurrent state or token-shift vector
// last written in an earlier step, the residual rows written two or more launches back,
// the step's uploaded metadata) may be read before the wait, so that its latency overlaps
// that kernel (the backend does so in PDL steps of small models: CudaBackendOptions::
// early_reads). Each such early read says which launch wrote what it reads last. Without
// PDL (SetPdl(false), the default, or a GPU before sm_90) the launch is an ordinary
// stream-ordered one and both calls do nothing.
// Threads: the backend sets the switch before each step's forward (steps of few sessions
// only); Launch from the thread that owns the stream, like every launcher. Whether a launch
// has the attribute never changes results, only when the next kernel may be scheduled.
#pragma once
#include <cuda_runtime.h>

namespace rwkvx::kernels {

// Process-wide: whether Launch asks for programmatic stream serialization.
void SetPdl(bool on);
bool PdlOn();

__device__ __forceinline__ void PdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void PdlTrigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Asks L2 for the 128-byte line holding p (no register written, L1 untouched; a hint).
// Before PdlWait for memory that the kernel right before does not write (the rule above).
__device__ __forceinline__ void PrefetchL2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// kernel<<<grid, block, smem, s>>>(args...), with the PDL attribute when PdlOn().
template <typename... P, typename... A>
cudaError_t Launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, const A&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = PdlOn() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

}  // namespace rwkvx::kernels

// In a launcher returning cudaError_t: Launch, returning its error if it failed.
#define RWKVX_KLAUNCH(kernel, grid, block, smem, stream, ...)                                                 \
  do {                                                                                                        \
    const cudaError_t rwkvx_launch_e = ::rwkvx::kernels::Launch(kernel, grid, block, smem, stream, __VA_ARGS__); \
    if (rwkvx_launch_e != cudaSuccess) return rwkvx_launch_e;                                                 \
  } while (0)
