#include "kernels/launch.cuh"
#include "kernels/kernel_util.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_inner.cuh"

namespace rwkvx::kernels {
namespace {
constexpr int N = wkv7::kN;
constexpr int P = wkv7::kP;  // threads per state row
constexpr int J = wkv7::kJ;  // columns per thread

// grid (H, items), 256 / R threads: thread t owns columns [(t%4)*16, +16) of rows
// t/4 + r*(64/R) of the head's state in registers and runs the item's tokens through
// wkv7::Wkv7TokensR (inputs staged in shared memory TC tokens at a time, conflict-free
// float4 reads). R = 1 for decode steps (more threads for the state's loads and stores);
// R = 4 where items are long (a quarter of the shared-memory reads per token). Same bits.
template <int R>
__global__ void __launch_bounds__(N * P / R, R == 1 ? 4 : 6) Wkv7Kernel(Wkv7Params p) {
  PdlWait();  // first: before any memory access or early return (kernels/launch.cuh)
  PdlTrigger();
  constexpr int G = N / R;
  __shared__ __align__(16) wkv7::StageRwk sh;
  __shared__ wkv7::StageV sv;
  const int h = blockIdx.x, it = blockIdx.y, t = threadIdx.x;
  const int g = t / P, part = t % P, j0 = part * J;
  float* S = p.item_state[it] + p.state_off + static_cast<size_t>(h) * N * N;
  float s[R][J];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int jj = 0; jj < J; ++jj) s[r][jj] = S[(j0 + jj) * N + g + r * G];
  const int row0 = p.item_row0[it], len = p.item_len[it];
  wkv7::Wkv7TokensR<R>(s, sh, sv, p, row0, len, h, /*zero_v=*/false, [&](int tok, int i, float y) {
    p.y[static_cast<size_t>(row0 + tok) * p.C + h * N + i] = y;
  });
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int jj = 0; jj < J; ++jj) S[(j0 + jj) * N + g + r * G] = s[r][jj];
}
}  // namespace

cudaError_t LaunchWkv7(const Wkv7Params& p, cudaStream_t s) {
  if (p.items == 0) return cudaSuccess;
  if (p.rows_per_thread == 4) {
    RWKVX_KLAUNCH(Wkv7Kernel<4>, dim3(p.H, p.items), N * P / 4, 0, s, p);
  } else if (p.rows_per_thread == 1) {
    RWKVX_KLAUNCH(Wkv7Kernel<1>, dim3(p.H, p.items), N * P, 0, s, p);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace rwkvx::kernels
