// The model's weights on the GPU: matrices in fp16 (or bf16), vectors in float32. With
// 8-bit weights the large projections (RWKV r/k/v/o and channel mix, attention q/k/v/o and
// channel mix) are E4M3 or int8 codes with a float32 scale per output row
// (kernels/fp8.cuh); the LoRA factors, the head and every vector stay as they are.
// LoRA matrices are stored in torch Linear layout [out, in] (transposed at upload) so that
// every projection is the same GEMM. Owned by the CUDA backend; immutable after Upload.
#pragma once

#include <cuda_runtime.h>

#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "kernels/fp8.cuh"

namespace rwkvx::cuda {

struct DevRwkvBlock {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  const float* mix6;  // [6, C]: x_r x_k x_v x_w x_a x_g (r, k, v first: their mixes are
                      // consecutive planes for the batched projection)
  const float *w0, *a0, *v0, *k_k, *k_a, *r_k, *ln_x_w, *ln_x_b, *ffn_x_k;
  const void *Wr, *Wk, *Wv, *Wo;                // [C, C]; Wr, Wk, Wv one allocation, C * C apart
  const void *w1, *w2, *a1, *a2, *v1, *v2, *g1, *g2;  // [rank, C] / [C, rank]
  const void *ffn_key, *ffn_value;              // [F, C] / [C, F]
};

struct DevAttnBlock {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b, *ffn_x_k;
  const void *Wq, *Wk, *Wv, *Wo, *ffn_key, *ffn_value;  // Wq, Wk, Wv one allocation, C * C apart
};

class DeviceModel {
 public:
  ~DeviceModel();
  // w8: the large projections in that 8-bit format (none: half).
  static absl::StatusOr<std::unique_ptr<DeviceModel>> Upload(const Model& m, bool bf16,
                                                             std::optional<kernels::W8> w8, cudaStream_t s);

  // The per-row scales of an 8-bit matrix (the pointer a Dev*Block field holds), or null for
  // a half matrix.
  const float* ScaleOf(const void* w) const {
    if (scales_.empty()) return nullptr;
    const auto it = scales_.find(w);
    return it == scales_.end() ? nullptr : it->second;
  }

  bool bf16 = false;
  bool w8 = false;                        // 8-bit projections present, in format w8_fmt
  kernels::W8 w8_fmt = kernels::W8::kE4M3;
  // w8: room for the largest run of 8-bit matrices dequantized to half for a cuBLAS GEMM
  // (the r/k/v triple or a channel-mix matrix; CudaBackend::GemmJobs). Not in `bytes`.
  void* deq = nullptr;
  size_t deq_elems = 0;
  const float* emb = nullptr;  // [V, C] float32
  const float *ln_out_w = nullptr, *ln_out_b = nullptr;
  const void* head = nullptr;  // [V, C]
  std::vector<DevRwkvBlock> rwkv;
  std::vector<DevAttnBlock> attn;
  size_t bytes = 0;

 private:
  absl::StatusOr<const float*> F32(const std::vector<float>& v, cudaStream_t s);
  // Half copy of a matrix; `transpose_rows` > 0: the input is [transpose_rows, n/rows] and is
  // stored transposed.
  absl::StatusOr<const void*> Half(const std::vector<float>& v, cudaStream_t s, size_t transpose_rows = 0);
  // 8-bit (w8_fmt) copy of a matrix [rows, v.size() / rows] and its scales (kernels/fp8.cuh).
  absl::StatusOr<const void*> Bytes8(const std::vector<float>& v, size_t rows, cudaStream_t s);
  absl::StatusOr<void*> Alloc(size_t bytes);
  std::unordered_map<const void*, const float*> scales_;
  std::vector<void*> allocs_;
  float* staging_ = nullptr;  // device staging for fp32 -> half conversion
  size_t staging_floats_ = 0;
};

}  // namespace rwkvx::cuda
