// The tensor-core step shared by the skinny kernel (kernels/gemm_skinny.cu) and the tiled
// batch-invariant kernel (kernels/gemm_invariant.cu): one `mma.sync m16n8k16` with fp16 or
// bf16 inputs and fp32 accumulation, c = A * B + c, and the 32-bit register m of a 16-byte
// fragment load. Both kernels go through these, so their sums are the same instruction on
// the same operands.
// Threads: device code, called by all 32 lanes of a warp (sm_80 or newer).
#pragma once
#include <cstdint>

namespace rwkvx::kernels {

template <bool kBf16>
__device__ __forceinline__ void Mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  if constexpr (kBf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// Register m (0..3) of a 16-byte load.
__device__ __forceinline__ uint32_t Reg(const uint4& u, int m) {
  return m == 0 ? u.x : m == 1 ? u.y : m == 2 ? u.z : u.w;
}

}  // namespace rwkvx::kernels
