#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_inner.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = wkv7::kN;
constexpr int P = wkv7::kP;  // threads per state row
constexpr int J = wkv7::kJ;  // columns per thread

// grid (H, items), 256 threads: thread t owns columns [(t%4)*16, +16) of row t/4 of the
// head's state in registers and runs the item's tokens through wkv7::Wkv7Tokens (inputs
// staged in shared memory TC tokens at a time, conflict-free float4 reads).
__global__ void __launch_bounds__(N * P, 4) Wkv7Kernel(Wkv7Params p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  __shared__ __align__(16) wkv7::StageRwk sh;
  __shared__ wkv7::StageV sv;
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int i = t / P, part = t % P, j0 = part * J;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[J];
#pragma unroll
  for (int jj = 0; jj < J; ++jj) s[jj] = S[(j0 + jj) * N + i];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  wkv7::Wkv7Tokens(s, sh, sv, p, row0, len, h, /*zero_v=*/false,
                   [&](int tok, float y) { p.y[static_cast<size_t>(row0 + tok) * p.C + h * N + i] = y; });
#pragma unroll
  for (int jj = 0; jj < J; ++jj) S[(j0 + jj) * N + i] = s[jj];
}
}  // namespace

cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s) {
  if (p.items == 0) return cudaSuccess;
  RWKVX_KLAUNCH(Wkv7Kernel, dim3(p.H, p.items), N * P, 0, s, p);
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
