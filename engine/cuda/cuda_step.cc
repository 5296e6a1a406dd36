// CudaBackend::Step: plans the step on the host (rows, attention paths, compressions,
// KV capacity), uploads one metadata block, runs the blocks in model order and copies the
// requested logits back. Every projection is one cuBLAS GEMM over all rows of the step.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/attn_decode.cuh"
#include "kernels/attn_prefill.cuh"
#include "kernels/chunk_select.cuh"
#include "kernels/embed.cuh"
#include "kernels/gemv.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/kv_compress.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/rwkv7_post.cuh"
#include "kernels/rwkv7_prep.cuh"
#include "kernels/sample.cuh"
#include "kernels/token_shift.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_chunked.cuh"

namespace rwkvx::cuda {
namespace {

bool ShouldCompress(const SparseAttnConfig& cfg, int ct) {
  // Same trigger as the CPU reference (engine/cpu/sparse_attention.cc).
  return cfg.max_kv_cache_size > 0 && ct > cfg.max_kv_cache_size;
}

size_t Align(size_t n) { return (n + 15) / 16 * 16; }

}  // namespace

absl::Status CudaBackend::Gemm(float* y, const void* x, const void* w, int rows, int out, int in, bool accumulate) {
  if (rows <= kernels::kGemvMaxRows && in % 8 == 0) {  // decode of a few sessions: weight-bound GEMV
    kernels::GemvParams g;
    g.x = x;
    g.w = w;
    g.y = y;
    g.accumulate = accumulate;
    g.bf16 = dev_->bf16;
    g.rows = rows;
    g.out = out;
    g.in = in;
    RWKVX_CUDA_RETURN(kernels::LaunchGemv(g, stream_));
    return absl::OkStatus();
  }
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const cudaDataType_t t = dev_->bf16 ? CUDA_R_16BF : CUDA_R_16F;
  RWKVX_CUBLAS_RETURN(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, t, in, x, t, in,
                                   &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaBackend::GemmHalfOut(void* y, const void* x, const void* w, int rows, int out, int in) {
  if (rows <= kernels::kGemvMaxRows && in % 8 == 0) {
    kernels::GemvParams g;
    g.x = x;
    g.w = w;
    g.y_half = y;
    g.bf16 = dev_->bf16;
    g.rows = rows;
    g.out = out;
    g.in = in;
    RWKVX_CUDA_RETURN(kernels::LaunchGemv(g, stream_));
    return absl::OkStatus();
  }
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t t = dev_->bf16 ? CUDA_R_16BF : CUDA_R_16F;
  RWKVX_CUBLAS_RETURN(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, t, in, x, t, in,
                                   &beta, y, t, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaBackend::GemmJobs(const GemmJob* jobs, int n, int rows) {
  bool grouped = rows <= kernels::kGemvMaxRows;
  for (int j = 0; j < n; ++j) grouped = grouped && jobs[j].in % 8 == 0;
  if (grouped) {  // decode of a few sessions: up to kGemvMaxJobs products per launch
    for (int j0 = 0; j0 < n; j0 += kernels::kGemvMaxJobs) {
      kernels::GemvGroupParams g;
      g.n_jobs = std::min(n - j0, kernels::kGemvMaxJobs);
      for (int j = 0; j < g.n_jobs; ++j) {
        const GemmJob& q = jobs[j0 + j];
        kernels::GemvParams& p = g.job[j];
        p.x = q.x;
        p.w = q.w;
        p.y = q.y;
        p.y_half = q.y_half;
        p.accumulate = q.accumulate;
        p.act = q.act;
        p.bf16 = dev_->bf16;
        p.rows = rows;
        p.out = q.out;
        p.in = q.in;
      }
      RWKVX_CUDA_RETURN(kernels::LaunchGemvGroup(g, stream_));
    }
    return absl::OkStatus();
  }
  for (int j = 0; j < n; ++j) {
    const GemmJob& q = jobs[j];
    if (q.y) {
      RWKVX_RETURN_IF_ERROR(Gemm(q.y, q.x, q.w, rows, q.out, q.in, q.accumulate));
    } else if (q.act == kernels::Act::kNone) {  // the GEMM writes the half output directly
      RWKVX_RETURN_IF_ERROR(GemmHalfOut(q.y_half, q.x, q.w, rows, q.out, q.in));
    } else {
      RWKVX_RETURN_IF_ERROR(Gemm(q.tmp, q.x, q.w, rows, q.out, q.in, false));
      kernels::ActivationParams a;
      a.in = q.tmp;
      a.out = q.y_half;
      a.bf16 = dev_->bf16;
      a.n = static_cast<size_t>(rows) * q.out;
      a.act = q.act;
      RWKVX_CUDA_RETURN(kernels::LaunchActivation(a, stream_));
    }
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::NormShift(const float* ln_w, const float* ln_b, const float* mix, int n_mix,
                                    size_t prev_off, int rows, int items) {
  kernels::LayerNormParams ln;
  ln.x = ws_.x;
  ln.w = ln_w;
  ln.b = ln_b;
  ln.rows = rows;
  ln.C = C_;
  ln.bf16 = dev_->bf16;
  if (max_len_ == 1) {  // decode: one row per item, row r is item r: one fused launch
    ln.mix = mix;
    ln.n_mix = n_mix;
    ln.mix_out = ws_.mixh;
    ln.item_state = d_item_state_;
    ln.state_off = prev_off;
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
    return absl::OkStatus();
  }
  ln.out = ws_.u;
  RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
  kernels::TokenShiftParams ts;
  ts.u = ws_.u;
  ts.row_item = d_row_item_;
  ts.item_row0 = d_item_row0_;
  ts.item_len = d_item_len_;
  ts.item_state = d_item_state_;
  ts.state_off = prev_off;
  ts.mix = mix;
  ts.n_mix = n_mix;
  ts.out = ws_.mixh;
  ts.bf16 = dev_->bf16;
  ts.rows = rows;
  ts.items = items;
  ts.C = C_;
  RWKVX_CUDA_RETURN(kernels::LaunchTokenShift(ts, stream_));
  return absl::OkStatus();
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
  for (float** f : {&ws_.x, &ws_.u, &ws_.r, &ws_.k, &ws_.v, &ws_.w, &ws_.a, &ws_.kk, &ws_.y, &ws_.g, &ws_.vfirst, &ws_.vg})
    alloc(RC * sizeof(float), f);
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
  ws_.wkv = nullptr;
  if (ws_.rows >= kWkvChunkedMinLen) alloc(kWkvScratchBytes, &ws_.wkv);
  if (failed) {
    for (void* p : ws_.allocs) cudaFree(p);
    ws_ = Ws{};
    return absl::ResourceExhaustedError("GPU memory exhausted while allocating the step workspace");
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::ChannelMix(const float* ln_w, const float* ln_b, const float* x_k, const void* key,
                                     const void* value, size_t prev_off, int rows, int items) {
  RWKVX_RETURN_IF_ERROR(NormShift(ln_w, ln_b, x_k, 1, prev_off, rows, items));
  GemmJob k{};
  k.y_half = ws_.ffnh;
  k.tmp = ws_.ffn;
  k.x = ws_.mixh;
  k.w = key;
  k.out = F_;
  k.in = C_;
  k.act = kernels::Act::kReluSq;
  RWKVX_RETURN_IF_ERROR(GemmJobs(&k, 1, rows));
  return Gemm(ws_.x, ws_.ffnh, value, rows, C_, F_, true);
}

absl::Status CudaBackend::RwkvBlock(int i, int rows, int items) {
  const DevRwkvBlock& w = dev_->rwkv[i];
  const ModelShape& s = model_->shape;
  const bool bf = dev_->bf16;
  const size_t plane = static_cast<size_t>(rows) * C_ * 2;
  auto mix = [&](int m) { return static_cast<const void*>(static_cast<char*>(ws_.mixh) + m * plane); };

  RWKVX_RETURN_IF_ERROR(NormShift(w.ln1_w, w.ln1_b, w.mix6, 6, AttPrevOff(i), rows, items));
  // mixes: 0 r, 1 w, 2 k, 3 v, 4 a, 5 g. The LoRA hidden layers go to four half planes.
  const size_t lplane = static_cast<size_t>(rows) * maxrank_ * 2;
  auto hid = [&](int m) { return static_cast<void*>(static_cast<char*>(ws_.lorah) + m * lplane); };
  GemmJob down[7], up[4];
  int nd = 0, nu = 0;
  auto proj = [&](float* y, const void* x, const void* wt) { down[nd++] = GemmJob{y, nullptr, nullptr, x, wt, C_, C_}; };
  auto lora = [&](int m, float* y, const void* x, const void* w1, const void* w2, int rank, kernels::Act act) {
    down[nd++] = GemmJob{nullptr, hid(m), ws_.lora, x, w1, rank, C_, false, act};
    up[nu++] = GemmJob{y, nullptr, nullptr, hid(m), w2, C_, rank};
  };
  proj(ws_.r, mix(0), w.Wr);
  proj(ws_.k, mix(2), w.Wk);
  proj(ws_.v, mix(3), w.Wv);
  lora(0, ws_.w, mix(1), w.w1, w.w2, s.rank_w, kernels::Act::kTanh);
  lora(1, ws_.a, mix(4), w.a1, w.a2, s.rank_a, kernels::Act::kNone);
  if (i != 0) lora(2, ws_.vg, mix(3), w.v1, w.v2, s.rank_v, kernels::Act::kNone);
  lora(3, ws_.g, mix(5), w.g1, w.g2, s.rank_g, kernels::Act::kSigmoid);
  RWKVX_RETURN_IF_ERROR(GemmJobs(down, nd, rows));
  RWKVX_RETURN_IF_ERROR(GemmJobs(up, nu, rows));

  kernels::Rwkv7PrepParams pp;
  pp.k = ws_.k;
  pp.v = ws_.v;
  pp.w = ws_.w;
  pp.a = ws_.a;
  pp.kk = ws_.kk;
  pp.vg = ws_.vg;
  pp.v_first = ws_.vfirst;
  pp.first_layer = i == 0;
  pp.w0 = w.w0;
  pp.a0 = w.a0;
  pp.v0 = w.v0;
  pp.k_k = w.k_k;
  pp.k_a = w.k_a;
  pp.rows = rows;
  pp.C = C_;
  pp.H = H_;
  RWKVX_CUDA_RETURN(kernels::LaunchRwkv7Prep(pp, stream_));
  kernels::Wkv7Params wp;
  wp.r = ws_.r;
  wp.w = ws_.w;
  wp.k = ws_.k;
  wp.v = ws_.v;
  wp.kk = ws_.kk;
  wp.a = ws_.a;
  wp.y = ws_.y;
  wp.item_row0 = d_item_row0_;
  wp.item_len = d_item_len_;
  wp.item_state = d_item_state_;
  wp.state_off = WkvOff(i);
  wp.items = items;
  wp.C = C_;
  wp.H = H_;
  if (wkv_chunked_) {
    kernels::Wkv7ChunkedParams cp;
    cp.base = wp;
    cp.max_len = max_len_;
    cp.scratch = ws_.wkv;
    cp.seg_chunks = std::max<int>(1, kWkvScratchBytes / sizeof(float) / (static_cast<size_t>(items) * H_ * kernels::kWkv7ChunkFloats));
    RWKVX_CUDA_RETURN(kernels::LaunchWkv7Chunked(cp, stream_));
  } else {
    RWKVX_CUDA_RETURN(kernels::LaunchWkv7(wp, stream_));
  }
  kernels::Rwkv7PostParams po;
  po.y = ws_.y;
  po.r = ws_.r;
  po.k = ws_.k;
  po.v = ws_.v;
  po.g = ws_.g;
  po.ln_w = w.ln_x_w;
  po.ln_b = w.ln_x_b;
  po.r_k = w.r_k;
  po.out = ws_.yh;
  po.bf16 = bf;
  po.rows = rows;
  po.C = C_;
  po.H = H_;
  RWKVX_CUDA_RETURN(kernels::LaunchRwkv7Post(po, stream_));
  RWKVX_RETURN_IF_ERROR(Gemm(ws_.x, ws_.yh, w.Wo, rows, C_, C_, true));
  return ChannelMix(w.ln2_w, w.ln2_b, w.ffn_x_k, w.ffn_key, w.ffn_value, FfnPrevOff(i), rows, items);
}

absl::Status CudaBackend::AttnBlock(int j, int rows, int items) {
  const DevAttnBlock& w = dev_->attn[j];
  const SparseAttnConfig& cfg = model_->attn;
  const bool bf = dev_->bf16;
  kernels::LayerNormParams ln;
  ln.x = ws_.x;
  ln.w = w.ln1_w;
  ln.b = w.ln1_b;
  ln.out = ws_.u;
  ln.out_half = ws_.mixh;
  ln.bf16 = bf;
  ln.rows = rows;
  ln.C = C_;
  RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
  float* q = ws_.r;
  const GemmJob qkv[3] = {GemmJob{q, nullptr, nullptr, ws_.mixh, w.Wq, C_, C_},
                         GemmJob{ws_.k, nullptr, nullptr, ws_.mixh, w.Wk, C_, C_},
                         GemmJob{ws_.v, nullptr, nullptr, ws_.mixh, w.Wv, C_, C_}};
  RWKVX_RETURN_IF_ERROR(GemmJobs(qkv, 3, rows));

  int touch = 1, max_chunks = 0;
  bool sparse = false;
  for (int b = 0; b < items; ++b) {
    const AttnPlan& p = plan_[j][b];
    const kernels::AttnItem& it = attn_items_[j][b];
    if (p.compress) {
      const KvCache& old = item_sess_[b]->kv[j];
      kernels::KvCompressParams cp;
      cp.k = old.k;
      cp.v = old.v;
      cp.new_k = p.fresh.k;
      cp.new_v = p.fresh.v;
      // Votes: q of the decode token, or the layer-normed inputs u of a prefill (reference quirk).
      cp.q = (it.len == 1 ? q : ws_.u) + static_cast<size_t>(it.row0) * C_;
      cp.nq = it.len;
      cp.ct = old.ct;
      cp.npast = p.npast;
      cp.keep = p.keep;
      cp.C = C_;
      cp.H = H_;
      RWKVX_CUDA_RETURN(kernels::LaunchKvCompress(cp, stream_));
      kernels::ChunkSumsParams cs;
      cs.k = p.fresh.k;
      cs.sums = p.fresh.sums;
      cs.ct = it.ct;
      cs.C = C_;
      cs.chunk = cfg.chunk_size;
      RWKVX_CUDA_RETURN(kernels::LaunchChunkSums(cs, stream_));
    }
    touch = std::max(touch, (it.ct + it.len - 1) / cfg.chunk_size - it.ct / cfg.chunk_size + 1);
    if (it.len == 1 && it.sparse) {
      sparse = true;
      max_chunks = std::max(max_chunks, it.ct / cfg.chunk_size);
    }
  }
  if (graph_mode_) {  // a replayed graph must fit every later step with the same key
    sparse = graph_sparse_;
    max_chunks = graph_chunk_cap_;
  }
  const kernels::AttnItem* d_items = d_attn_items_ + static_cast<size_t>(j) * items;
  kernels::KvAppendParams ap;
  ap.items = d_items;
  ap.row_item = d_row_item_;
  ap.k = ws_.k;
  ap.v = ws_.v;
  ap.rows = rows;
  ap.n_items = items;
  ap.C = C_;
  ap.chunk = cfg.chunk_size;
  ap.max_chunks_touched = touch;
  RWKVX_CUDA_RETURN(kernels::LaunchKvAppend(ap, stream_));
  if (sparse) {
    kernels::ChunkSelectParams cs;
    cs.items = d_items;
    cs.q = q;
    cs.selected = ws_.selected;
    cs.n_items = items;
    cs.C = C_;
    cs.chunk = cfg.chunk_size;
    cs.topk = cfg.topk;
    cs.max_chunks = max_chunks;
    RWKVX_CUDA_RETURN(kernels::LaunchChunkSelect(cs, stream_));
  }
  if (any_decode_) {
    kernels::AttnDecodeParams dp;
    dp.items = d_items;
    dp.q = q;
    dp.selected = ws_.selected;
    dp.out = ws_.yh;
    dp.bf16 = bf;
    dp.part = ws_.part;
    dp.n_items = items;
    dp.C = C_;
    dp.H = H_;
    dp.chunk = cfg.chunk_size;
    dp.topk = cfg.topk;
    dp.splits = decode_splits_;
    RWKVX_CUDA_RETURN(kernels::LaunchAttnDecode(dp, stream_));
  }
  if (any_prefill_) {
    kernels::AttnPrefillParams pp;
    pp.items = d_items;
    pp.q = q;
    pp.out = ws_.yh;
    pp.bf16 = bf;
    pp.n_items = items;
    pp.C = C_;
    pp.H = H_;
    pp.chunk = cfg.chunk_size;
    pp.max_len = max_len_;
    RWKVX_CUDA_RETURN(kernels::LaunchAttnPrefill(pp, stream_));
  }
  RWKVX_RETURN_IF_ERROR(Gemm(ws_.x, ws_.yh, w.Wo, rows, C_, C_, true));
  return ChannelMix(w.ln2_w, w.ln2_b, w.ffn_x_k, w.ffn_key, w.ffn_value, AttnFfnPrevOff(j), rows, items);
}

void CudaBackend::DropGraphs() {
  for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
}

absl::Status CudaBackend::Forward(int rows, int nitems, int nl) {
  kernels::EmbedParams ep;
  ep.emb = dev_->emb;
  ep.tokens = d_tokens_;
  ep.x = ws_.x;
  ep.rows = rows;
  ep.C = C_;
  RWKVX_CUDA_RETURN(kernels::LaunchEmbed(ep, stream_));
  for (int blk : model_->order) {
    if (blk >= 0)
      RWKVX_RETURN_IF_ERROR(RwkvBlock(blk, rows, nitems));
    else
      RWKVX_RETURN_IF_ERROR(AttnBlock(-blk - 1, rows, nitems));
  }
  if (nl > 0) {
    kernels::LayerNormParams ln;
    ln.x = ws_.x;
    ln.row_index = d_logit_rows_;
    ln.w = dev_->ln_out_w;
    ln.b = dev_->ln_out_b;
    ln.out_half = ws_.headh;
    ln.bf16 = dev_->bf16;
    ln.rows = nl;
    ln.C = C_;
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
    RWKVX_RETURN_IF_ERROR(Gemm(ws_.logits, ws_.headh, dev_->head, nl, V_, C_, false));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RunStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                 std::vector<SampledToken>* sampled) {
  logits->clear();
  if (sampled) sampled->clear();
  const int nitems = static_cast<int>(items.size());
  if (nitems == 0) return absl::OkStatus();
  const SparseAttnConfig& cfg = model_->attn;
  const int Bc = cfg.chunk_size, thr = cfg.Threshold();

  // --- Validate and lay out rows.
  item_sess_.assign(nitems, nullptr);
  item_row0_.assign(nitems, 0);
  item_len_.assign(nitems, 0);
  std::set<SessionId> seen;
  // Logit rows: those copied to the host first, then those sampled on the device.
  std::vector<int> logit_rows, samp_rows, samp_items;
  size_t n_adjust = 0;
  int rows = 0;
  max_len_ = 0;
  for (int b = 0; b < nitems; ++b) {
    const StepInput& in = items[b];
    auto it = sessions_.find(in.session);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", in.session));
    if (!seen.insert(in.session).second)
      return absl::InvalidArgumentError(absl::StrCat("session ", in.session, " appears twice in one step"));
    if (in.tokens.empty()) return absl::InvalidArgumentError("a step item has no tokens");
    for (int32_t t : in.tokens)
      if (t < 0 || t >= V_) return absl::InvalidArgumentError(absl::StrCat("token id ", t, " out of range"));
    item_sess_[b] = &it->second;
    item_row0_[b] = rows;
    item_len_[b] = static_cast<int>(in.tokens.size());
    rows += item_len_[b];
    max_len_ = std::max(max_len_, item_len_[b]);
    if (in.sample) {
      if (!sampled) return absl::InvalidArgumentError("a step item asks for device sampling through Step");
      if (!in.want_logits) return absl::InvalidArgumentError("device sampling needs want_logits");
      for (const auto& [t, v] : in.sample->adjust)
        if (t < 0 || t >= V_) return absl::InvalidArgumentError(absl::StrCat("adjusted token id ", t, " out of range"));
      samp_rows.push_back(rows - 1);
      samp_items.push_back(b);
      n_adjust += in.sample->adjust.size();
    } else if (in.want_logits) {
      logit_rows.push_back(rows - 1);
    }
  }
  const int n_host = static_cast<int>(logit_rows.size());
  const int n_samp = static_cast<int>(samp_rows.size());
  logit_rows.insert(logit_rows.end(), samp_rows.begin(), samp_rows.end());

  // --- Plan the sparse layers: compression, paths, KV capacity. Nothing changes yet.
  plan_.assign(M_, std::vector<AttnPlan>(nitems));
  attn_items_.assign(M_, std::vector<kernels::AttnItem>(nitems));
  std::vector<std::pair<KvCache*, int>> grows;  // (cache, new cap)
  size_t extra = 0;
  any_decode_ = any_prefill_ = false;
  int maxL = 1;
  for (int b = 0; b < nitems; ++b) (item_len_[b] == 1 ? any_decode_ : any_prefill_) = true;
  for (int j = 0; j < M_; ++j) {
    for (int b = 0; b < nitems; ++b) {
      KvCache& kv = item_sess_[b]->kv[j];
      AttnPlan& p = plan_[j][b];
      const int T = item_len_[b];
      int ct = kv.ct;
      if (ShouldCompress(cfg, ct) && cfg.min_kv_cache_size < ct && ct - cfg.kv_cache_window_size > 0) {
        p.compress = true;
        p.npast = ct - cfg.kv_cache_window_size;
        p.keep = std::min(cfg.min_kv_cache_size - cfg.kv_cache_window_size, p.npast);
        ct = p.keep + (kv.ct - p.npast);
        const int need = ct + T;
        p.fresh.cap = RoundCap(std::max(need, cfg.max_kv_cache_size + 2));
        extra += p.fresh.Bytes(C_, Bc);
      } else if (ct + T > kv.cap) {
        const int need = ct + T;
        int cap = RoundCap(std::max(need, kv.cap + kv.cap / 2));
        if (cfg.max_kv_cache_size > 0 && need <= cfg.max_kv_cache_size + 1)
          cap = std::min(cap, RoundCap(cfg.max_kv_cache_size + 2));
        cap = std::max(cap, RoundCap(need));
        KvCache probe;
        probe.cap = cap;
        extra += probe.Bytes(C_, Bc) - kv.Bytes(C_, Bc);
        grows.push_back({&kv, cap});
      }
      kernels::AttnItem& a = attn_items_[j][b];
      a.ct = ct;
      a.row0 = item_row0_[b];
      a.len = T;
      a.prefix = (T + ct <= thr || cfg.prefill_mode == AttnPrefillMode::kFull) ? 1 : 0;
      a.sparse = (ct <= thr || cfg.decode_mode == AttnDecodeMode::kFull) ? 0 : 1;
      if (T == 1) {
        const int nsel = a.sparse ? std::min(cfg.topk, ct / Bc) : 0;
        const int tail0 = a.sparse ? (ct / Bc) * Bc : 0;
        maxL = std::max(maxL, nsel * Bc + ct + 1 - tail0);
      }
    }
  }
  {
    const size_t ws = WsBytes(std::max(rows, ws_.rows), std::max(nitems, ws_.items),
                              std::max<int>({1, static_cast<int>(logit_rows.size()), ws_.logit_rows}),
                              std::max(ws_.part_floats, kernels::AttnDecodeScratchFloats(nitems, H_, 64)));
    if (UsedBytes() + extra + ws > budget_bytes_)
      return absl::ResourceExhaustedError(absl::StrCat("GPU memory budget exhausted: the step needs ", extra,
                                                       " more bytes of KV cache and ", ws, " of workspace"));
  }
  // On an allocation failure below, give back the compaction targets taken so far.
  auto drop_fresh = [&] {
    for (auto& layer : plan_)
      for (AttnPlan& p : layer) {
        if (p.fresh.k) FreeKv(&p.fresh);
        p.fresh = KvCache{};
        p.compress = false;
      }
  };

  // --- Grow caches (copy rows and sums) and allocate compaction targets.
  for (auto& [kv, cap] : grows) {
    KvCache n;
    RWKVX_RETURN_IF_ERROR(AllocKv(&n, cap));
    if (kv->ct > 0) {
      const size_t bytes = static_cast<size_t>(kv->ct) * C_ * sizeof(__half);
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(n.k, kv->k, bytes, cudaMemcpyDeviceToDevice, stream_));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(n.v, kv->v, bytes, cudaMemcpyDeviceToDevice, stream_));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(n.sums, kv->sums, static_cast<size_t>(kv->ct / Bc + 1) * C_ * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
    }
    n.ct = kv->ct;
    FreeKv(kv);
    *kv = n;
  }
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < nitems; ++b) {
      AttnPlan& p = plan_[j][b];
      kernels::AttnItem& a = attn_items_[j][b];
      if (p.compress) {
        const int cap = p.fresh.cap;
        p.fresh.cap = 0;
        if (absl::Status st = AllocKv(&p.fresh, cap); !st.ok()) {
          drop_fresh();
          return st;
        }
      }
      const KvCache& src = p.compress ? p.fresh : item_sess_[b]->kv[j];
      a.k = src.k;
      a.v = src.v;
      a.sums = src.sums;
    }
  // Prefill of few sessions: the chunked recurrence spreads each (item, head) over many SMs.
  wkv_chunked_ = use_wkv_chunked_ && max_len_ >= kWkvChunkedMinLen && nitems * H_ < 2 * 132;
  decode_splits_ = 1;
  if (any_decode_) {
    const int want = std::max(1, (2 * 132 + nitems * H_ - 1) / (nitems * H_));
    decode_splits_ = std::clamp(std::min(want, maxL / 256), 1, 64);
  }
  const size_t part_floats = any_decode_ ? kernels::AttnDecodeScratchFloats(nitems, H_, decode_splits_) : 0;
  if (absl::Status st = EnsureWorkspace(rows, nitems, std::max<int>(1, logit_rows.size()), part_floats); !st.ok()) {
    drop_fresh();
    return st;
  }

  // --- Metadata: one pinned block, one upload.
  const size_t o_tokens = 0;
  const size_t o_row_item = Align(o_tokens + rows * sizeof(int));
  const size_t o_row0 = Align(o_row_item + rows * sizeof(int));
  const size_t o_len = Align(o_row0 + nitems * sizeof(int));
  const size_t o_lrows = Align(o_len + nitems * sizeof(int));
  const size_t o_state = Align(o_lrows + std::max<size_t>(1, logit_rows.size()) * sizeof(int));
  const size_t o_attn = Align(o_state + nitems * sizeof(float*));
  const size_t o_samp = Align(o_attn + static_cast<size_t>(M_) * nitems * sizeof(kernels::AttnItem));
  const size_t o_adj_tok = Align(o_samp + n_samp * sizeof(kernels::SampleItem));
  const size_t o_adj_val = Align(o_adj_tok + n_adjust * sizeof(int));
  const size_t o_out_tok = Align(o_adj_val + n_adjust * sizeof(float));  // written by the sampler
  const size_t o_out_lp = Align(o_out_tok + n_samp * sizeof(int));
  const size_t total = Align(o_out_lp + n_samp * sizeof(float));
  if (total > meta_cap_) {
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
    DropGraphs();  // they hold metadata pointers
    if (meta_dev_) RWKVX_CUDA_RETURN(cudaFree(meta_dev_));
    if (meta_host_) RWKVX_CUDA_RETURN(cudaFreeHost(meta_host_));
    meta_cap_ = std::max(total, meta_cap_ * 2);
    RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&meta_dev_), meta_cap_));
    RWKVX_CUDA_RETURN(cudaMallocHost(reinterpret_cast<void**>(&meta_host_), meta_cap_));
  }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));  // the pinned block may still be in flight
  {
    int* tok = reinterpret_cast<int*>(meta_host_ + o_tokens);
    int* ri = reinterpret_cast<int*>(meta_host_ + o_row_item);
    for (int b = 0; b < nitems; ++b)
      for (int t = 0; t < item_len_[b]; ++t) {
        tok[item_row0_[b] + t] = items[b].tokens[t];
        ri[item_row0_[b] + t] = b;
      }
    std::memcpy(meta_host_ + o_row0, item_row0_.data(), nitems * sizeof(int));
    std::memcpy(meta_host_ + o_len, item_len_.data(), nitems * sizeof(int));
    if (!logit_rows.empty()) std::memcpy(meta_host_ + o_lrows, logit_rows.data(), logit_rows.size() * sizeof(int));
    float** st = reinterpret_cast<float**>(meta_host_ + o_state);
    for (int b = 0; b < nitems; ++b) st[b] = item_sess_[b]->state;
    kernels::AttnItem* ai = reinterpret_cast<kernels::AttnItem*>(meta_host_ + o_attn);
    for (int j = 0; j < M_; ++j) std::copy(attn_items_[j].begin(), attn_items_[j].end(), ai + static_cast<size_t>(j) * nitems);
    kernels::SampleItem* si = reinterpret_cast<kernels::SampleItem*>(meta_host_ + o_samp);
    int* adj_tok = reinterpret_cast<int*>(meta_host_ + o_adj_tok);
    float* adj_val = reinterpret_cast<float*>(meta_host_ + o_adj_val);
    int na = 0;
    for (int j = 0; j < n_samp; ++j) {
      const DeviceSampling& ds = *items[samp_items[j]].sample;
      si[j].row = n_host + j;
      si[j].temperature = ds.temperature;
      si[j].top_p = ds.top_p;
      si[j].top_k = ds.top_k;
      si[j].uniform = ds.uniform;
      si[j].adj0 = na;
      si[j].nadj = static_cast<int>(ds.adjust.size());
      for (const auto& [t, v] : ds.adjust) {
        adj_tok[na] = t;
        adj_val[na++] = v;
      }
    }
  }
  // Everything up to the sampler's outputs goes up.
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(meta_dev_, meta_host_, o_out_tok, cudaMemcpyHostToDevice, stream_));
  d_tokens_ = reinterpret_cast<int*>(meta_dev_ + o_tokens);
  d_row_item_ = reinterpret_cast<int*>(meta_dev_ + o_row_item);
  d_item_row0_ = reinterpret_cast<int*>(meta_dev_ + o_row0);
  d_item_len_ = reinterpret_cast<int*>(meta_dev_ + o_len);
  d_logit_rows_ = reinterpret_cast<int*>(meta_dev_ + o_lrows);
  d_item_state_ = reinterpret_cast<float**>(meta_dev_ + o_state);
  d_attn_items_ = reinterpret_cast<kernels::AttnItem*>(meta_dev_ + o_attn);

  // --- Forward: eager, or a CUDA graph for pure decode steps.
  const int nl = static_cast<int>(logit_rows.size());
  bool any_compress = false;
  int max_chunks = 0;
  bool any_sparse = false;
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < nitems; ++b) {
      any_compress |= plan_[j][b].compress;
      if (attn_items_[j][b].sparse) {
        any_sparse = true;
        max_chunks = std::max(max_chunks, attn_items_[j][b].ct / Bc);
      }
    }
  if (use_graphs_ && !any_prefill_ && !any_compress) {
    int cap = 16;
    while (cap < max_chunks) cap *= 2;
    const GraphKey key{nitems, nl, decode_splits_, any_sparse ? cap : 0, any_sparse ? 1 : 0};
    auto g = graphs_.find(key);
    if (g == graphs_.end()) {
      graph_mode_ = true;
      graph_sparse_ = any_sparse;
      graph_chunk_cap_ = any_sparse ? cap : 0;
      RWKVX_CUDA_RETURN(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      absl::Status fs = Forward(rows, nitems, nl);
      cudaGraph_t graph = nullptr;
      const cudaError_t ce = cudaStreamEndCapture(stream_, &graph);
      graph_mode_ = false;
      if (!fs.ok()) {
        if (graph) cudaGraphDestroy(graph);
        return fs;
      }
      RWKVX_CUDA_RETURN(ce);
      cudaGraphExec_t exec = nullptr;
      const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      RWKVX_CUDA_RETURN(ie);
      g = graphs_.emplace(key, exec).first;
    }
    RWKVX_CUDA_RETURN(cudaGraphLaunch(g->second, stream_));
  } else {
    RWKVX_RETURN_IF_ERROR(Forward(rows, nitems, nl));
  }
  if (n_host > 0) {
    logits->resize(static_cast<size_t>(n_host) * V_);
    RWKVX_CUDA_RETURN(cudaMemcpyAsync(logits->data(), ws_.logits, logits->size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
  }
  if (n_samp > 0) {
    kernels::SampleParams sp;
    sp.logits = ws_.logits;
    sp.items = reinterpret_cast<const kernels::SampleItem*>(meta_dev_ + o_samp);
    sp.adj_tok = reinterpret_cast<const int*>(meta_dev_ + o_adj_tok);
    sp.adj_val = reinterpret_cast<const float*>(meta_dev_ + o_adj_val);
    sp.n = n_samp;
    sp.V = V_;
    sp.out_token = reinterpret_cast<int*>(meta_dev_ + o_out_tok);
    sp.out_logprob = reinterpret_cast<float*>(meta_dev_ + o_out_lp);
    RWKVX_CUDA_RETURN(kernels::LaunchSample(sp, stream_));
    RWKVX_CUDA_RETURN(cudaMemcpyAsync(meta_host_ + o_out_tok, meta_dev_ + o_out_tok, total - o_out_tok,
                                      cudaMemcpyDeviceToHost, stream_));
  }

  // --- Commit host-side bookkeeping (frees are stream-ordered after the step's work).
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < nitems; ++b) {
      KvCache& kv = item_sess_[b]->kv[j];
      AttnPlan& p = plan_[j][b];
      if (p.compress) {
        FreeKv(&kv);
        kv = p.fresh;
        p.fresh = KvCache{};
      }
      kv.ct = attn_items_[j][b].ct + item_len_[b];
    }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  RWKVX_CUDA_RETURN(cudaGetLastError());
  for (int b = 0; b < nitems; ++b) item_sess_[b]->tokens_seen += item_len_[b];
  if (n_samp > 0) {
    const int* tok = reinterpret_cast<const int*>(meta_host_ + o_out_tok);
    const float* lp = reinterpret_cast<const float*>(meta_host_ + o_out_lp);
    sampled->resize(n_samp);
    for (int j = 0; j < n_samp; ++j) (*sampled)[j] = SampledToken{tok[j], lp[j]};
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
