// Device buffers for the kernel-level CUDA tests: uploads, downloads, and paged KV caches
// laid out as the engine lays them out (kernels/attn_item.cuh). Test code only: every
// allocation is leaked on purpose (a test process is short-lived).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/attn_item.cuh"

// In a test body: the launch or call returned cudaSuccess, else the test stops.
#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x

namespace rwkvx {

// n uniform floats in [lo, hi).
inline std::vector<float> Rand(size_t n, std::mt19937& g, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <class T>
inline T* Dev(const std::vector<T>& h) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, h.size() * sizeof(T) + 16), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}
template <class T>
inline std::vector<T> Host(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// A paged KV cache as the engine lays it out (kernels/attn_item.cuh), its pages scattered:
// cache page i sits in slot 2 * (npages - 1 - i) + 1 of one buffer (reversed, with gaps),
// so that a kernel that ignored the page table would read the wrong rows.
struct PagedKv {
  kernels::KvView view;
  __half* buf = nullptr;
  int npages = 0, C = 0;
  __half* Page(int i) const {
    const size_t page = static_cast<size_t>(kernels::kKvPageRows) * C * 2;
    return buf + (2 * static_cast<size_t>(npages - 1 - i) + 1) * page;
  }
};
inline PagedKv UploadPaged(const std::vector<__half>& k, const std::vector<__half>& v, int cap_rows, int C) {
  const int P = kernels::kKvPageRows;
  PagedKv out;
  out.C = C;
  out.npages = std::max(1, (cap_rows + P - 1) / P);
  const size_t ph = static_cast<size_t>(P) * C;  // halves of K (or V) in a page
  out.buf = Dev(std::vector<__half>((2 * out.npages + 1) * 2 * ph, __float2half(NAN)));
  std::vector<__half*> table(out.npages);
  const size_t rows = k.size() / C;
  for (int i = 0; i < out.npages; ++i) {
    table[i] = out.Page(i);
    const size_t r0 = static_cast<size_t>(i) * P;
    if (r0 >= rows) continue;
    const size_t n = std::min<size_t>(P, rows - r0) * C;
    EXPECT_EQ(cudaMemcpy(table[i], k.data() + r0 * C, n * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(table[i] + ph, v.data() + r0 * C, n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
  out.view.pages = Dev(table);
  out.view.v_off = static_cast<long long>(ph);
  return out;
}
// Rows [0, rows) of K (or V) of a paged cache.
inline std::vector<__half> DownloadPaged(const PagedKv& c, int rows, bool v) {
  const int P = kernels::kKvPageRows;
  std::vector<__half> out(static_cast<size_t>(rows) * c.C);
  for (int r0 = 0; r0 < rows; r0 += P) {
    const size_t n = static_cast<size_t>(std::min(P, rows - r0)) * c.C;
    const __half* src = c.Page(r0 / P) + (v ? static_cast<size_t>(P) * c.C : 0);
    EXPECT_EQ(cudaMemcpy(out.data() + static_cast<size_t>(r0) * c.C, src, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return out;
}

}  // namespace rwkvx
