#include "engine/cuda/device_model.h"

#include <algorithm>

#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"

namespace rwkvx::cuda {

DeviceModel::~DeviceModel() {
  for (void* p : allocs_) cudaFree(p);
  if (staging_) cudaFree(staging_);
}

absl::StatusOr<const float*> DeviceModel::F32(const std::vector<float>& v, cudaStream_t s) {
  if (v.empty()) return nullptr;
  void* p = nullptr;
  RWKVX_CUDA_RETURN(cudaMalloc(&p, v.size() * sizeof(float)));
  allocs_.push_back(p);
  bytes += v.size() * sizeof(float);
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, s));
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(s));
  return static_cast<const float*>(p);
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
  void* p = nullptr;
  RWKVX_CUDA_RETURN(cudaMalloc(&p, v.size() * 2));
  allocs_.push_back(p);
  bytes += v.size() * 2;
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

absl::StatusOr<std::unique_ptr<DeviceModel>> DeviceModel::Upload(const Model& m, bool bf16, cudaStream_t s) {
  auto d = std::make_unique<DeviceModel>();
  d->bf16 = bf16;
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
  // Three projections of one shape in one allocation, at a fixed stride, so that a step
  // runs them as one strided-batched GEMM (CudaBackend::GemmJobs).
  auto three = [&](const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                   const void** pa, const void** pb, const void** pc) -> absl::Status {
    if (a.size() != b.size() || a.size() != c.size()) return absl::InternalError("projections of unequal size");
    std::vector<float> all;
    all.reserve(3 * a.size());
    for (const auto* v : {&a, &b, &c}) all.insert(all.end(), v->begin(), v->end());
    auto r = d->Half(all, s, 0);
    if (!r.ok()) return r.status();
    const char* base = static_cast<const char*>(*r);
    *pa = base;
    *pb = base + a.size() * 2;
    *pc = base + 2 * a.size() * 2;
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
    HALF_OR_RETURN(b.Wo, w.Wo, 0);
    // x @ W1 with W1 [C, rank]: stored as the Linear weight W1^T [rank, C]; W2 [rank, C] as [C, rank].
    HALF_OR_RETURN(b.w1, w.w1, C);
    HALF_OR_RETURN(b.a1, w.a1, C);
    HALF_OR_RETURN(b.v1, w.v1, C);
    HALF_OR_RETURN(b.g1, w.g1, C);
    HALF_OR_RETURN(b.w2, w.w2, w.w2.size() / C);
    HALF_OR_RETURN(b.a2, w.a2, w.a2.size() / C);
    HALF_OR_RETURN(b.v2, w.v2, w.v2.empty() ? 0 : w.v2.size() / C);
    HALF_OR_RETURN(b.g2, w.g2, w.g2.size() / C);
    HALF_OR_RETURN(b.ffn_key, w.ffn_key, 0);
    HALF_OR_RETURN(b.ffn_value, w.ffn_value, 0);
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
    HALF_OR_RETURN(b.Wo, w.Wo, 0);
    HALF_OR_RETURN(b.ffn_key, w.ffn_key, 0);
    HALF_OR_RETURN(b.ffn_value, w.ffn_value, 0);
    d->attn.push_back(b);
  }
#undef F32_OR_RETURN
#undef HALF_OR_RETURN
  cudaFree(d->staging_);
  d->staging_ = nullptr;
  return d;
}

}  // namespace rwkvx::cuda
