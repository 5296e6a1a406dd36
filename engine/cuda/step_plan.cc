// CudaBackend::PlanStep: the host-side plan of a step (rows, logit rows, per sparse layer
// compression, KV capacity and attention paths, kernel choices) and the metadata layout.
// Nothing on the device changes here.
#include "engine/cuda/step_plan.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/attn_decode.cuh"

namespace rwkvx::cuda {
namespace {

bool ShouldCompress(const SparseAttnConfig& cfg, int ct) {
  // Same trigger as the CPU reference (engine/cpu/sparse_attention.cc).
  return cfg.max_kv_cache_size > 0 && ct > cfg.max_kv_cache_size;
}

size_t Align(size_t n) { return (n + 15) / 16 * 16; }

}  // namespace

StepMetaLayout StepMetaLayout::For(const StepPlan& plan, int M) {
  const size_t rows = plan.rows, nitems = plan.items, n_samp = plan.n_samp, n_adjust = plan.n_adjust,
               n_mask = plan.n_mask_words;
  StepMetaLayout o;
  o.tokens = 0;
  o.row_item = Align(o.tokens + rows * sizeof(int));
  o.row0 = Align(o.row_item + rows * sizeof(int));
  o.len = Align(o.row0 + nitems * sizeof(int));
  o.logit_rows = Align(o.len + nitems * sizeof(int));
  o.state = Align(o.logit_rows + std::max<size_t>(1, plan.logit_rows.size()) * sizeof(int));
  o.attn = Align(o.state + nitems * sizeof(float*));
  o.samp = Align(o.attn + static_cast<size_t>(M) * nitems * sizeof(kernels::AttnItem));
  o.adj_tok = Align(o.samp + n_samp * sizeof(kernels::SampleItem));
  o.adj_val = Align(o.adj_tok + n_adjust * sizeof(int));
  o.mask = Align(o.adj_val + n_adjust * sizeof(float));
  o.pt_dst = Align(o.mask + n_mask * sizeof(uint32_t));
  o.pt_val = Align(o.pt_dst + plan.pt_dst.size() * sizeof(void*));
  const size_t nwkv = plan.wkv_long > 0 ? nitems : 0;
  o.wkv_row0 = Align(o.pt_val + plan.pt_val.size() * sizeof(void*));
  o.wkv_len = Align(o.wkv_row0 + nwkv * sizeof(int));
  o.wkv_state = Align(o.wkv_len + nwkv * sizeof(int));
  o.out_tok = Align(o.wkv_state + nwkv * sizeof(float*));  // written by the sampler
  o.out_lp = Align(o.out_tok + n_samp * sizeof(int));
  o.total = Align(o.out_lp + n_samp * sizeof(float));
  return o;
}

StepMetaViews StepMetaLayout::At(char* base) const {
  StepMetaViews v;
  v.tokens = reinterpret_cast<int*>(base + tokens);
  v.row_item = reinterpret_cast<int*>(base + row_item);
  v.item_row0 = reinterpret_cast<int*>(base + row0);
  v.item_len = reinterpret_cast<int*>(base + len);
  v.logit_rows = reinterpret_cast<int*>(base + logit_rows);
  v.item_state = reinterpret_cast<float**>(base + state);
  v.attn_items = reinterpret_cast<kernels::AttnItem*>(base + attn);
  v.samp = reinterpret_cast<kernels::SampleItem*>(base + samp);
  v.adj_tok = reinterpret_cast<int*>(base + adj_tok);
  v.adj_val = reinterpret_cast<float*>(base + adj_val);
  v.mask = reinterpret_cast<uint32_t*>(base + mask);
  v.pt_dst = reinterpret_cast<void***>(base + pt_dst);
  v.pt_val = reinterpret_cast<void**>(base + pt_val);
  v.wkv_row0 = reinterpret_cast<int*>(base + wkv_row0);
  v.wkv_len = reinterpret_cast<int*>(base + wkv_len);
  v.wkv_state = reinterpret_cast<float**>(base + wkv_state);
  v.out_token = reinterpret_cast<int*>(base + out_tok);
  v.out_logprob = reinterpret_cast<float*>(base + out_lp);
  return v;
}

absl::Status CudaBackend::PlanStep(const std::vector<StepInput>& items, bool device_sampling, StepPlan* plan) {
  StepPlan& p = *plan;
  const int nitems = static_cast<int>(items.size());
  const SparseAttnConfig& cfg = model_->attn;
  const int Bc = cfg.chunk_size, thr = cfg.Threshold();

  // --- Validate and lay out rows.
  p.items = p.real_items = nitems;
  p.sess.assign(nitems, nullptr);
  p.row0.assign(nitems, 0);
  p.len.assign(nitems, 0);
  std::set<SessionId> seen;
  // Logit rows: those copied to the host first, then those sampled on the device.
  std::vector<int>& logit_rows = p.logit_rows;
  std::vector<int> samp_rows;
  logit_rows.clear();
  p.samp_items.clear();
  p.n_adjust = 0;
  p.n_mask_words = 0;
  int rows = 0;
  p.max_len = 0;
  for (int b = 0; b < nitems; ++b) {
    const StepInput& in = items[b];
    auto it = sessions_.find(in.session);
    if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", in.session));
    if (!seen.insert(in.session).second)
      return absl::InvalidArgumentError(absl::StrCat("session ", in.session, " appears twice in one step"));
    if (in.tokens.empty()) return absl::InvalidArgumentError("a step item has no tokens");
    for (int32_t t : in.tokens)
      if (t < 0 || t >= V_) return absl::InvalidArgumentError(absl::StrCat("token id ", t, " out of range"));
    p.sess[b] = &it->second;
    p.row0[b] = rows;
    p.len[b] = static_cast<int>(in.tokens.size());
    rows += p.len[b];
    p.max_len = std::max(p.max_len, p.len[b]);
    if (in.sample) {
      if (!device_sampling) return absl::InvalidArgumentError("a step item asks for device sampling through Step");
      if (!in.want_logits) return absl::InvalidArgumentError("device sampling needs want_logits");
      for (const auto& [t, v] : in.sample->adjust)
        if (t < 0 || t >= V_) return absl::InvalidArgumentError(absl::StrCat("adjusted token id ", t, " out of range"));
      samp_rows.push_back(rows - 1);
      p.samp_items.push_back(b);
      p.n_adjust += in.sample->adjust.size();
      if (in.sample->allowed.size() > static_cast<size_t>((V_ + 31) / 32))
        return absl::InvalidArgumentError("a sampling mask is longer than the vocabulary");
      p.n_mask_words += in.sample->allowed.size();
    } else if (in.want_logits) {
      logit_rows.push_back(rows - 1);
    }
  }
  p.rows = rows;
  p.n_host = static_cast<int>(logit_rows.size());
  p.n_samp = static_cast<int>(samp_rows.size());
  logit_rows.insert(logit_rows.end(), samp_rows.begin(), samp_rows.end());

  // --- Plan the sparse layers: compression, paths, KV capacity. Nothing changes yet.
  p.attn.assign(M_, std::vector<AttnPlan>(nitems));
  p.attn_items.assign(M_, std::vector<kernels::AttnItem>(nitems));
  size_t& extra = p.extra_kv_bytes;
  extra = 0;
  p.any_decode = p.any_prefill = false;
  int maxL = 1;  // longest row span a decode item attends over
  for (int b = 0; b < nitems; ++b) (p.len[b] == 1 ? p.any_decode : p.any_prefill) = true;
  for (int j = 0; j < M_; ++j) {
    for (int b = 0; b < nitems; ++b) {
      KvCache& kv = p.sess[b]->kv[j];
      AttnPlan& ap = p.attn[j][b];
      const int T = p.len[b];
      int ct = kv.ct;
      if (ShouldCompress(cfg, ct) && cfg.min_kv_cache_size < ct && ct - cfg.kv_cache_window_size > 0) {
        ap.compress = true;
        ap.npast = ct - cfg.kv_cache_window_size;
        ap.keep = std::min(cfg.min_kv_cache_size - cfg.kv_cache_window_size, ap.npast);
        ct = ap.keep + (kv.ct - ap.npast);
        extra += CacheBytesFor(ct + T);  // the compaction target, written whole
      } else {
        extra += static_cast<size_t>(StepPages(kv, T)) * PageBytes();
      }
      kernels::AttnItem& a = p.attn_items[j][b];
      a.ct = ct;
      a.row0 = p.row0[b];
      a.len = T;
      a.prefix = (T + ct <= thr || cfg.prefill_mode == AttnPrefillMode::kFull) ? 1 : 0;
      a.sparse = (ct <= thr || cfg.decode_mode == AttnDecodeMode::kFull) ? 0 : 1;
      // Batch-invariant mode: a full-path decode token runs in the prefill kernel, over the
      // whole cache (prefix path) like any prefill row of the same keys.
      if (opts_.batch_invariant && T == 1 && !a.sparse) a.prefix = 1;
      if (T == 1 && (a.sparse || !opts_.batch_invariant)) {
        const int nsel = a.sparse ? std::min(cfg.topk, ct / Bc) : 0;
        const int tail0 = a.sparse ? (ct / Bc) * Bc : 0;
        maxL = std::max(maxL, nsel * Bc + ct + 1 - tail0);
      }
    }
  }
  // Pure decode steps replay CUDA graphs keyed by the item count: pad to a bucket so that
  // a few graphs serve every count.
  if (opts_.cuda_graphs && !p.any_prefill && pad_.state) {
    bool any_compress = false;
    for (const auto& layer : p.attn)
      for (const AttnPlan& ap : layer) any_compress |= ap.compress;
    if (!any_compress) PadDecodeStep(&p);
  }
  {
    const size_t ws = WsBytes(std::max(p.rows, ws_.rows), std::max(p.items, ws_.items),
                              std::max<int>({1, static_cast<int>(logit_rows.size()), ws_.logit_rows}),
                              std::max(ws_.part_floats, kernels::AttnDecodeScratchFloats(p.items, H_, 64)));
    if (!SessionsFit(extra, ws))
      return absl::ResourceExhaustedError(absl::StrCat("GPU memory budget exhausted: the step needs ", extra,
                                                       " more bytes of KV cache and ", ws, " of workspace"));
  }

  // --- Kernel choices. Prefill of few sessions: the chunked recurrence spreads each
  // (item, head) over many SMs. Decode: split each (item, head) so that the attention
  // has about two blocks per SM.
  const int min_len = WkvChunkedMinLen();
  // Batch-invariant mode: always the sequential recurrence (WkvChunkedMinLen is INT_MAX),
  // whose rows do not depend on the cut nor on the other items.
  p.wkv_chunked = p.max_len >= min_len && p.items * H_ < 2 * sm_count_;
  // Long prompt chunks beside many short items (new requests joining decoding ones): the
  // sequential kernel would run each long item's rows on one block per head while the
  // rest of the step waits; the long ones take the chunked kernel instead.
  p.wkv_long = 0;
  p.wkv_order.clear();
  if (!p.wkv_chunked && p.max_len >= min_len) {
    for (int b = 0; b < p.items; ++b)
      if (p.len[b] >= min_len) p.wkv_order.push_back(b);
    if (!p.wkv_order.empty() && static_cast<int>(p.wkv_order.size()) * H_ < 2 * sm_count_) {
      p.wkv_long = static_cast<int>(p.wkv_order.size());
      for (int b = 0; b < p.items; ++b)
        if (p.len[b] < min_len) p.wkv_order.push_back(b);
    } else {
      p.wkv_order.clear();
    }
  }
  p.decode_splits = 1;
  p.decode_split_want = 0;
  if (p.any_decode && opts_.batch_invariant) {
    // Each item's slices from its own key count (the choice for an item alone); the grid
    // fits the longest (maxL spans the sparse decode items only: the rest run in the
    // prefill kernel).
    p.decode_split_want = std::min(64, (opts_.attn_blocks_per_sm * sm_count_ + H_ - 1) / H_);
    p.decode_splits = kernels::ItemSplits(maxL, p.decode_split_want);
  } else if (p.any_decode) {
    p.decode_splits = DecodeSplits(p.items, maxL);
  }
  return absl::OkStatus();
}

int CudaBackend::DecodeBucket(int n) const {
  if (n <= 16) return n;
  int g = 1;  // an eighth of the power of two below n: at most 12.5% of the rows are pads
  while (g * 16 < n) g *= 2;
  int N = (n + g - 1) / g * g;
  if (opts_.reserve_step_rows > 0) N = std::min(N, std::max(n, std::min(opts_.reserve_step_rows, opts_.reserve_step_items)));
  return N;
}

void CudaBackend::PadDecodeStep(StepPlan* plan) {
  StepPlan& p = *plan;
  const int N = DecodeBucket(p.items);
  // Pads compute logits only when every real item does, so that the graph key (items,
  // logit rows) is the bucket's in both the common cases (all or none).
  const bool pad_logits = static_cast<int>(p.logit_rows.size()) == p.items;
  for (int b = p.items; b < N; ++b) {
    p.sess.push_back(&pad_);
    p.row0.push_back(p.rows);
    p.len.push_back(1);
    if (pad_logits) p.logit_rows.push_back(p.rows);  // after every real logit row: never read back
    for (int j = 0; j < M_; ++j) {
      p.attn[j].emplace_back();
      kernels::AttnItem a;
      a.ct = 0;
      a.row0 = p.rows;
      a.len = 1;
      p.attn_items[j].push_back(a);
    }
    ++p.rows;
  }
  p.items = N;
}

// Key slices per (item, head) for decode attention over `max_len` keys: about two blocks
// per SM over all items, at least 64 keys a slice, at most 64 slices.
int CudaBackend::DecodeSplits(int nitems, int max_len) const {
  const int want = std::max(1, (opts_.attn_blocks_per_sm * sm_count_ + nitems * H_ - 1) / (nitems * H_));
  return std::clamp(std::min(want, max_len / 64), 1, 64);
}

}  // namespace rwkvx::cuda
