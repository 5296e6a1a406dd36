#include "engine/cuda/device_model.h"

#include <algorithm>

#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/fp8.cuh"

namespace rwkvx::cuda {

DeviceModel::~DeviceModel() {
  for (void* p : allocs_) cudaFree(p);
  if (staging_) cudaFree(staging_);
}

absl::StatusOr<void*> DeviceModel::Alloc(size_t n) {
  void* p = nullptr;
  RWKVX_CUDA_RETURN(cudaMalloc(&p, n));
  allocs_.push_back(p);
  bytes += n;
  return p;
}

absl::StatusOr<const float*> DeviceModel::F32(const std::vector<float>& v, cudaStream_t s) {
  if (v.empty()) return nullptr;
  auto a = Alloc(v.size() * sizeof(float));
  if (!a.ok()) return a.status();
  void* p = *a;
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, s));
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(s));
  return static_cast<const float*>(p);
}

absl::StatusOr<const void*> DeviceModel::Bytes8(const std::vector<float>& v, size_t rows, cudaStream_t s) {
  if (v.empty()) return nullptr;
  const size_t in = v.size() / rows;
  if (in % 16 != 0 || in * rows != v.size())
    return absl::InvalidArgumentError("8-bit weights need matrices whose input size is a multiple of 16");
  auto q = Alloc(v.size());
  if (!q.ok()) return q.status();
  auto sc = Alloc(rows * sizeof(float));
  if (!sc.ok()) return sc.status();
  if (!staging_) {
    staging_floats_ = size_t{16} << 20;  // 64 MiB
    RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&staging_), staging_floats_ * sizeof(float)));
  }
  const size_t per = std::max<size_t>(1, staging_floats_ / in);  // whole rows a pass
  if (per * in > staging_floats_) return absl::InvalidArgumentError("8-bit weights: a matrix row over 16M values");
  for (size_t r0 = 0; r0 < rows; r0 += per) {
    const size_t n = std::min(per, rows - r0);
    RWKVX_CUDA_RETURN(cudaMemcpyAsync(staging_, v.data() + r0 * in, n * in * sizeof(float), cudaMemcpyHostToDevice, s));
    kernels::Fp8QuantParams qp;
    qp.w = staging_;
    qp.q = static_cast<uint8_t*>(*q) + r0 * in;
    qp.scale = static_cast<float*>(*sc) + r0;
    qp.fmt = w8_fmt;
    qp.rows = static_cast<int>(n);
    qp.in = static_cast<int>(in);
    RWKVX_CUDA_RETURN(kernels::LaunchQuantizeFp8Rows(qp, s));
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(s));  // staging is reused
  }
  scales_[*q] = static_cast<const float*>(*sc);
  deq_elems = std::max(deq_elems, v.size());
  return static_cast<const void*>(*q);
}

absl::StatusOr<const void*> DeviceModel::Half(const std::vector<float>& v, cudaStream_t s, size_t transpose_rows) {
  if (v.empty()) return nullptr;
  const std::vector<float>* src = &v;
  std::vector<float> t;
  if (transpose_rows > 0) {
    const size_t R = transpose_rows, Ccols = v.size() / R;
    t.resize(v.size());
    for (size_t i = 0; i < R; ++i)
      for (size_t j = 0; j < Ccols; ++j) t[j * R + i] = v[i * Ccols + j];
    src = &t;
  }
  auto a = Alloc(v.size() * 2);
  if (!a.ok()) return a.status();
  void* p = *a;
  if (!staging_) {
    staging_floats_ = size_t{16} << 20;  // 64 MiB
    RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&staging_), staging_floats_ * sizeof(float)));
  }
  for (size_t off = 0; off < src->size(); off += staging_floats_) {
    const size_t n = std::min(staging_floats_, src->size() - off);
    RWKVX_CUDA_RETURN(cudaMemcpyAsync(staging_, src->data() + off, n * sizeof(float), cudaMemcpyHostToDevice, s));
    kernels::ActivationParams a;
    a.in = staging_;
    a.out = static_cast<char*>(p) + off * 2;
    a.bf16 = bf16;
    a.n = n;
    a.act = kernels::Act::kNone;
    RWKVX_CUDA_RETURN(kernels::LaunchActivation(a, s));
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(s));  // staging is reused
  }
  return static_cast<const void*>(p);
}

absl::StatusOr<std::unique_ptr<DeviceModel>> DeviceModel::Upload(const Model& m, bool bf16,
                                                                 std::optional<kernels::W8> w8, cudaStream_t s) {
  auto d = std::make_unique<DeviceModel>();
  d->bf16 = bf16;
  const bool eight = w8.has_value();  // 8-bit projections, either format
  d->w8 = eight;
  d->w8_fmt = w8.value_or(kernels::W8::kE4M3);
  const size_t C = m.shape.n_embd;
#define F32_OR_RETURN(dst, vec)          \
  do {                                   \
    auto r_ = d->F32(vec, s);            \
    if (!r_.ok()) return r_.status();    \
    dst = *r_;                           \
  } while (0)
#define HALF_OR_RETURN(dst, vec, tr)     \
  do {                                   \
    auto r_ = d->Half(vec, s, tr);       \
    if (!r_.ok()) return r_.status();    \
    dst = *r_;                           \
  } while (0)
  // A large projection [out, in] (out = rows): 8-bit with w8, else half.
#define BIG_OR_RETURN(dst, vec, rows)                              \
  do {                                                             \
    auto r_ = eight ? d->Bytes8(vec, rows, s) : d->Half(vec, s, 0); \
    if (!r_.ok()) return r_.status();                              \
    dst = *r_;                                                     \
  } while (0)
  // Three projections of one shape in one allocation, at a fixed stride, so that a step
  // runs them as one strided-batched GEMM (CudaBackend::GemmJobs).
  auto three = [&](const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                   const void** pa, const void** pb, const void** pc) -> absl::Status {
    if (a.size() != b.size() || a.size() != c.size()) return absl::InternalError("projections of unequal size");
    std::vector<float> all;
    all.reserve(3 * a.size());
    for (const auto* v : {&a, &b, &c}) all.insert(all.end(), v->begin(), v->end());
    auto r = eight ? d->Bytes8(all, 3 * C, s) : d->Half(all, s, 0);  // [3C, C] either way
    if (!r.ok()) return r.status();
    const char* base = static_cast<const char*>(*r);
    const size_t el = eight ? 1 : 2;  // bytes a weight
    *pa = base;
    *pb = base + a.size() * el;
    *pc = base + 2 * a.size() * el;
    if (eight) {  // each part has its rows' scales (one [3C] array)
      const float* sc = d->ScaleOf(base);
      d->scales_[*pb] = sc + C;
      d->scales_[*pc] = sc + 2 * C;
    }
    return absl::OkStatus();
  };
  F32_OR_RETURN(d->emb, m.emb);
  F32_OR_RETURN(d->ln_out_w, m.ln_out_w);
  F32_OR_RETURN(d->ln_out_b, m.ln_out_b);
  HALF_OR_RETURN(d->head, m.head, 0);
  for (const RwkvBlockWeights& w : m.rwkv) {
    DevRwkvBlock b{};
    F32_OR_RETURN(b.ln1_w, w.ln1_w);
    F32_OR_RETURN(b.ln1_b, w.ln1_b);
    F32_OR_RETURN(b.ln2_w, w.ln2_w);
    F32_OR_RETURN(b.ln2_b, w.ln2_b);
    std::vector<float> mix6;
    mix6.reserve(6 * C);
    for (const auto* v : {&w.x_r, &w.x_k, &w.x_v, &w.x_w, &w.x_a, &w.x_g}) mix6.insert(mix6.end(), v->begin(), v->end());
    F32_OR_RETURN(b.mix6, mix6);
    F32_OR_RETURN(b.w0, w.w0);
    F32_OR_RETURN(b.a0, w.a0);
    F32_OR_RETURN(b.v0, w.v0);
    F32_OR_RETURN(b.k_k, w.k_k);
    F32_OR_RETURN(b.k_a, w.k_a);
    F32_OR_RETURN(b.r_k, w.r_k);
    F32_OR_RETURN(b.ln_x_w, w.ln_x_w);
    F32_OR_RETURN(b.ln_x_b, w.ln_x_b);
    F32_OR_RETURN(b.ffn_x_k, w.ffn_x_k);
    if (absl::Status st = three(w.Wr, w.Wk, w.Wv, &b.Wr, &b.Wk, &b.Wv); !st.ok()) return st;
    BIG_OR_RETURN(b.Wo, w.Wo, C);
    // x @ W1 with W1 [C, rank]: stored as the Linear weight W1^T [rank, C]; W2 [rank, C] as [C, rank].
    HALF_OR_RETURN(b.w1, w.w1, C);
    HALF_OR_RETURN(b.a1, w.a1, C);
    HALF_OR_RETURN(b.v1, w.v1, C);
    HALF_OR_RETURN(b.g1, w.g1, C);
    HALF_OR_RETURN(b.w2, w.w2, w.w2.size() / C);
    HALF_OR_RETURN(b.a2, w.a2, w.a2.size() / C);
    HALF_OR_RETURN(b.v2, w.v2, w.v2.empty() ? 0 : w.v2.size() / C);
    HALF_OR_RETURN(b.g2, w.g2, w.g2.size() / C);
    BIG_OR_RETURN(b.ffn_key, w.ffn_key, w.ffn_key.size() / C);
    BIG_OR_RETURN(b.ffn_value, w.ffn_value, C);
    d->rwkv.push_back(b);
  }
  for (const AttnBlockWeights& w : m.attn_blocks) {
    DevAttnBlock b{};
    F32_OR_RETURN(b.ln1_w, w.ln1_w);
    F32_OR_RETURN(b.ln1_b, w.ln1_b);
    F32_OR_RETURN(b.ln2_w, w.ln2_w);
    F32_OR_RETURN(b.ln2_b, w.ln2_b);
    F32_OR_RETURN(b.ffn_x_k, w.ffn_x_k);
    if (absl::Status st = three(w.Wq, w.Wk, w.Wv, &b.Wq, &b.Wk, &b.Wv); !st.ok()) return st;
    BIG_OR_RETURN(b.Wo, w.Wo, C);
    BIG_OR_RETURN(b.ffn_key, w.ffn_key, w.ffn_key.size() / C);
    BIG_OR_RETURN(b.ffn_value, w.ffn_value, C);
    d->attn.push_back(b);
  }
#undef F32_OR_RETURN
#undef HALF_OR_RETURN
#undef BIG_OR_RETURN
  if (eight) {  // step scratch, not weights: outside `bytes` (the session budget sees it as used memory)
    RWKVX_CUDA_RETURN(cudaMalloc(&d->deq, d->deq_elems * 2));
    d->allocs_.push_back(d->deq);
  }
  cudaFree(d->staging_);
  d->staging_ = nullptr;
  return d;
}

}  // namespace rwkvx::cuda
