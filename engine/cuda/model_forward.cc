// CudaBackend::Forward: embedding, the blocks in model order and the head over the
// planned step's rows, all on the backend's stream with no host copies (the part a decode
// step replays from a CUDA graph). Reads the plan (step_) and the uploaded metadata (meta_).
#include <cuda_fp16.h>

#include <algorithm>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/attn_decode.cuh"
#include "kernels/attn_prefill.cuh"
#include "kernels/chunk_select.cuh"
#include "kernels/embed.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/kv_compress.cuh"
#include "kernels/launch.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/rwkv7_post.cuh"
#include "kernels/rwkv7_prep.cuh"
#include "kernels/token_shift.cuh"
#include "kernels/wkv7.cuh"
#include "kernels/wkv7_chunked.cuh"

namespace rwkvx::cuda {

bool CudaBackend::EarlyReads() const {
  return kernels::PdlOn() && (opts_.early_reads < 0 ? C_ <= kGemvPrefetchMaxC : opts_.early_reads > 0);
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
  if (step_.max_len == 1 && fold_step_) {  // the next GEMV group normalizes (GemvFold)
    fold_next_ = kernels::GemvFold{ws_.x, ln_w, ln_b, ln.eps, C_, mix, meta_.item_state, prev_off, ws_.u,
                                   FoldOutsPerWarp()};
    save_after_fold_ = kernels::GemvSave{ws_.u, meta_.item_state, prev_off, C_};
    return absl::OkStatus();
  }
  if (step_.max_len == 1) {  // decode: one row per item, row r is item r: one fused launch
    ln.mix = mix;
    ln.n_mix = n_mix;
    ln.mix_out = ws_.mixh;
    ln.item_state = meta_.item_state;
    ln.state_off = prev_off;
    ln.early = EarlyReads();
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
    return absl::OkStatus();
  }
  if (opts_.fused_norm_shift && C_ <= kernels::kLnShiftRowsMaxC) {
    // Items of several rows: one launch too (LaunchLayerNormShiftRows: the same bits as the
    // two launches below, without the float32 copy of the normed rows).
    ln.mix = mix;
    ln.n_mix = n_mix;
    ln.mix_out = ws_.mixh;
    ln.item_state = meta_.item_state;
    ln.state_off = prev_off;
    const kernels::LayerNormItems items{meta_.row_item, meta_.item_row0, meta_.item_len};
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNormShiftRows(ln, items, stream_));
    return absl::OkStatus();
  }
  ln.out = ws_.u;
  RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
  kernels::TokenShiftParams ts;
  ts.u = ws_.u;
  ts.row_item = meta_.row_item;
  ts.item_row0 = meta_.item_row0;
  ts.item_len = meta_.item_len;
  ts.item_state = meta_.item_state;
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
  k.mix = 0;  // x_k: the one mix
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
  // mixes: 0 r, 1 k, 2 v, 3 w, 4 a, 5 g (DevRwkvBlock::mix6). The LoRA hidden layers go to four half planes.
  const size_t lplane = static_cast<size_t>(rows) * maxrank_ * 2;
  auto hid = [&](int m) { return static_cast<void*>(static_cast<char*>(ws_.lorah) + m * lplane); };
  GemmJob down[7], up[4];
  int nd = 0, nu = 0;
  auto proj = [&](float* y, int m, const void* wt) {
    down[nd++] = GemmJob{y, nullptr, nullptr, mix(m), wt, C_, C_, false, kernels::Act::kNone, m};
  };
  auto lora = [&](int h, float* y, int m, const void* w1, const void* w2, int rank, kernels::Act act) {
    down[nd++] = GemmJob{nullptr, hid(h), ws_.lora, mix(m), w1, rank, C_, false, act, m};
    up[nu++] = GemmJob{y, nullptr, nullptr, hid(h), w2, C_, rank};
  };
  proj(ws_.r, 0, w.Wr);  // r, k, v: one strided-batched GEMM above the GEMV sizes
  proj(ws_.k, 1, w.Wk);
  proj(ws_.v, 2, w.Wv);
  lora(0, ws_.w, 3, w.w1, w.w2, s.rank_w, kernels::Act::kTanh);
  lora(1, ws_.a, 4, w.a1, w.a2, s.rank_a, kernels::Act::kNone);
  if (i != 0) lora(2, ws_.vg, 2, w.v1, w.v2, s.rank_v, kernels::Act::kNone);
  lora(3, ws_.g, 5, w.g1, w.g2, s.rank_g, kernels::Act::kSigmoid);
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
  kernels::Wkv7Params wp;
  wp.r = ws_.r;
  wp.w = ws_.w;
  wp.k = ws_.k;
  wp.v = ws_.v;
  wp.kk = ws_.kk;
  wp.a = ws_.a;
  wp.y = ws_.y;
  wp.item_row0 = meta_.item_row0;
  wp.item_len = meta_.item_len;
  wp.item_state = meta_.item_state;
  wp.state_off = WkvOff(i);
  wp.items = items;
  wp.C = C_;
  wp.H = H_;
  wp.rows_per_thread = opts_.wkv_rows;
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
  if (opts_.fused_decode && rows == items && !step_.wkv_chunked && step_.wkv_long == 0) {
    // Every item one token: prep, recurrence and post in one launch (the same bits).
    kernels::Wkv7DecodeParams dp{wp, pp, po, opts_.decode_prefetch};
    dp.early = EarlyReads();
    RWKVX_CUDA_RETURN(kernels::LaunchWkv7Decode(dp, stream_));
  } else {
    RWKVX_RETURN_IF_ERROR(TimeMixKernels(pp, wp, po, items));
  }
  RWKVX_RETURN_IF_ERROR(Gemm(ws_.x, ws_.yh, w.Wo, rows, C_, C_, true));
  return ChannelMix(w.ln2_w, w.ln2_b, w.ffn_x_k, w.ffn_key, w.ffn_value, FfnPrevOff(i), rows, items);
}

// The time mix of a step that is not pure decode: rwkv7_prep over all rows, the recurrence
// (chunked for long items: step_plan.h), rwkv7_post.
absl::Status CudaBackend::TimeMixKernels(const kernels::Rwkv7PrepParams& pp, const kernels::Wkv7Params& wp,
                                         const kernels::Rwkv7PostParams& po, int items) {
  RWKVX_CUDA_RETURN(kernels::LaunchRwkv7Prep(pp, stream_));
  auto chunked = [&](const kernels::Wkv7Params& base) {
    kernels::Wkv7ChunkedParams cp;
    cp.base = base;
    cp.max_len = step_.max_len;
    cp.scratch = ws_.wkv;
    cp.seg_chunks = std::max<int>(
        1, kWkvScratchBytes / sizeof(float) / (static_cast<size_t>(base.items) * H_ * kernels::kWkv7ChunkFloats));
    cp.sm_count = sm_count_;
    cp.matrix_pass_a = opts_.wkv_matrix;
    return kernels::LaunchWkv7Chunked(cp, stream_);
  };
  if (step_.wkv_long > 0) {  // long items chunked, the rest sequential (step_plan.h)
    kernels::Wkv7Params lp = wp;
    lp.item_row0 = meta_.wkv_row0;
    lp.item_len = meta_.wkv_len;
    lp.item_state = meta_.wkv_state;
    lp.items = step_.wkv_long;
    RWKVX_CUDA_RETURN(chunked(lp));
    lp.item_row0 += step_.wkv_long;
    lp.item_len += step_.wkv_long;
    lp.item_state += step_.wkv_long;
    lp.items = items - step_.wkv_long;
    RWKVX_CUDA_RETURN(kernels::LaunchWkv7(lp, stream_));
  } else if (step_.wkv_chunked) {
    RWKVX_CUDA_RETURN(chunked(wp));
  } else {
    RWKVX_CUDA_RETURN(kernels::LaunchWkv7(wp, stream_));
  }
  RWKVX_CUDA_RETURN(kernels::LaunchRwkv7Post(po, stream_));
  return absl::OkStatus();
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
  ln.early = EarlyReads();
  if (fold_step_)  // the q/k/v group normalizes (GemvFold; no token shift here)
    fold_next_ = kernels::GemvFold{ws_.x, ln.w, ln.b, ln.eps, C_, nullptr, nullptr, 0, ws_.u, FoldOutsPerWarp()};
  else
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
  float* q = ws_.r;
  const GemmJob qkv[3] = {GemmJob{q, nullptr, nullptr, ws_.mixh, w.Wq, C_, C_},
                         GemmJob{ws_.k, nullptr, nullptr, ws_.mixh, w.Wk, C_, C_},
                         GemmJob{ws_.v, nullptr, nullptr, ws_.mixh, w.Wv, C_, C_}};
  RWKVX_RETURN_IF_ERROR(GemmJobs(qkv, 3, rows));

  int touch = 1, max_chunks = 0;
  bool sparse = false;
  for (int b = 0; b < items; ++b) {
    const AttnPlan& p = step_.attn[j][b];
    const kernels::AttnItem& it = step_.attn_items[j][b];
    if (p.compress) {
      const KvCache& old = step_.sess[b]->kv[j];
      kernels::KvCompressParams cp;
      cp.kv = KvViewOf(old);
      cp.out = it.kv;  // the compaction target's pages
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
      cs.kv = it.kv;
      cs.sums = it.sums;
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
  const kernels::AttnItem* d_items = meta_.attn_items + static_cast<size_t>(j) * items;
  // A pure decode step whose items all take the decode kernel: it appends the new rows
  // itself (AttnDecodeParams::append_k; the same bits, one launch fewer).
  const bool append_in_attn = opts_.fused_kv_append && rows == items && step_.any_decode && !opts_.batch_invariant;
  kernels::KvAppendParams ap;
  ap.items = d_items;
  ap.row_item = meta_.row_item;
  ap.k = ws_.k;
  ap.v = ws_.v;
  ap.rows = rows;
  ap.n_items = items;
  ap.C = C_;
  ap.chunk = cfg.chunk_size;
  ap.max_chunks_touched = touch;
  ap.one_row_items = rows == items;  // a pure decode step: one launch
  if (!append_in_attn) RWKVX_CUDA_RETURN(kernels::LaunchKvAppend(ap, stream_));
  // Steps of few sessions choose the chunks inside the decode attention kernel (the same
  // code and bits; AttnDecodeParams::select), larger ones in chunk_select.
  const bool select_in_attn =
      sparse && (opts_.fused_chunk_select < 0 ? items <= kSelectInAttnMaxItems : opts_.fused_chunk_select > 0);
  if (sparse && !select_in_attn) {
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
  // The batch-invariant mode runs full-path decode tokens in the prefill kernel below: the
  // decode kernel only where some decode item is sparse (`sparse`: the graph's key says so
  // when capturing).
  if (step_.any_decode && (sparse || !opts_.batch_invariant)) {
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
    dp.splits = step_.decode_splits;
    dp.split_want = step_.decode_split_want;
    dp.sparse_only = opts_.batch_invariant;  // full-path decode items: the prefill kernel below
    dp.tickets = ws_.tickets;  // the last block of each (item, head) merges: no second launch
    dp.prefetch_rows = EarlyReads();  // steps whose kernels start early (kernels/launch.cuh)
    if (append_in_attn) {
      dp.append_k = ws_.k;
      dp.append_v = ws_.v;
    }
    dp.select = select_in_attn;
    dp.max_chunks = max_chunks;
    RWKVX_CUDA_RETURN(kernels::LaunchAttnDecode(dp, stream_));
  }
  if (step_.any_prefill || (opts_.batch_invariant && step_.any_decode)) {
    kernels::AttnPrefillParams pp;
    pp.items = d_items;
    pp.q = q;
    pp.out = ws_.yh;
    pp.bf16 = bf;
    pp.n_items = items;
    pp.C = C_;
    pp.H = H_;
    pp.chunk = cfg.chunk_size;
    pp.max_len = step_.max_len;
    pp.singles = opts_.batch_invariant;
    RWKVX_CUDA_RETURN(kernels::LaunchAttnPrefill(pp, stream_));
  }
  RWKVX_RETURN_IF_ERROR(Gemm(ws_.x, ws_.yh, w.Wo, rows, C_, C_, true));
  return ChannelMix(w.ln2_w, w.ln2_b, w.ffn_x_k, w.ffn_key, w.ffn_value, AttnFfnPrevOff(j), rows, items);
}

absl::Status CudaBackend::Forward(int rows, int nitems, int nl) {
  // Folded LayerNorms: decode steps whose every product takes the GEMV (see gemm.cc).
  fold_step_ = opts_.fold_layernorm && FoldShapes() && !opts_.batch_invariant && step_.max_len == 1 &&
               rows == nitems && rows <= kernels::kGemvMaxRows;
  fold_next_ = {};
  save_after_fold_ = {};
  save_next_ = {};
  kernels::EmbedParams ep;
  ep.emb = dev_->emb;
  ep.tokens = meta_.tokens;
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
    ln.row_index = meta_.logit_rows;
    ln.w = dev_->ln_out_w;
    ln.b = dev_->ln_out_b;
    ln.out_half = ws_.headh;
    ln.bf16 = dev_->bf16;
    ln.rows = nl;
    ln.C = C_;
    ln.early = EarlyReads();
    RWKVX_CUDA_RETURN(kernels::LaunchLayerNorm(ln, stream_));
    RWKVX_RETURN_IF_ERROR(Gemm(ws_.logits, ws_.headh, dev_->head, nl, V_, C_, false));
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
