// The host-side plan of one CudaBackend step (CudaBackend::PlanStep, step_plan.cc) and the
// layout of the step's metadata block (one pinned host block, one upload: step_upload.cc).
// A step runs in phases, one file each:
//   PlanStep     (step_plan.cc)    validate, lay out rows, plan each sparse layer's KV
//                                  (compression, new pages, attention paths), check memory
//   ReserveStep  (step_reserve.cc) KV pages (new, copy-on-write, compaction targets),
//                                  page-table updates, workspace
//   UploadStep   (step_upload.cc)  fill the pinned metadata block, upload it, apply the
//                                  page-table updates
//   ForwardOrReplay (step_forward.cc) the model's forward, eager or as a CUDA graph
//   CommitStep   (step_commit.cc)  logits / sampled tokens out, KV lengths and counters
// Sizes in comments: C channels, H heads, M sparse-attention blocks (engine/cuda/cuda_session.h).
//
// Ownership: the backend owns its one StepPlan and reuses it step after step; a plan points
// into the backend's sessions (valid for the step only) and owns the compaction targets it
// allocated until CommitStep swaps them in. Plain data, no locking: the backend's caller
// thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_session.h"
#include "kernels/attn_item.cuh"
#include "kernels/sample.cuh"

namespace rwkvx::cuda {

// Sparse layer j, item b: what the step does to that session's KV cache.
struct AttnPlan {
  bool compress = false;
  int keep = 0, npast = 0;  // compression: keep `keep` of the first `npast` rows by votes
  KvCache fresh;            // compaction target when compress (its pages owned by the plan)
};

struct StepPlan {
  // Item b's tokens are rows [row0[b], row0[b] + len[b]) of the step. Items [real_items,
  // items) pad a decode step to its graph bucket: one token each, of the backend's pad
  // session (its cache stays empty, its outputs are never read).
  int items = 0, real_items = 0, rows = 0, max_len = 0;
  std::vector<CudaSession*> sess;  // [items] (the backend's sessions)
  std::vector<int> row0, len;      // [items]
  // Rows whose logits are computed: the n_host rows copied to the host first, then the
  // n_samp rows sampled on the device (of items samp_items, with n_adjust adjustments).
  std::vector<int> logit_rows;
  int n_host = 0, n_samp = 0;
  std::vector<int> samp_items;  // [n_samp]
  size_t n_adjust = 0;
  size_t n_mask_words = 0;  // the sampled rows' grammar masks, concatenated
  // Sparse layers: per layer and item, the plan and the attention kernels' view (the page
  // tables are set by ReserveStep once the pages exist).
  std::vector<std::vector<AttnPlan>> attn;                 // [M][items]
  std::vector<std::vector<kernels::AttnItem>> attn_items;  // [M][items]
  size_t extra_kv_bytes = 0;  // KV bytes the new pages, copies and compaction targets add
  // Device page-table entries to write before the forward (ReserveStep fills them).
  std::vector<void**> pt_dst;
  std::vector<void*> pt_val;
  bool any_decode = false, any_prefill = false;
  int decode_splits = 1;     // attn_decode's splits of each (item, head): its grid
  int decode_split_want = 0;  // batch-invariant mode: > 0, each item's own (AttnDecodeParams)
  bool wkv_chunked = false;  // kernels/wkv7_chunked.cuh for this step's recurrence
  // A step mixing long prompt chunks with other items: its wkv_long items of at least
  // WkvChunkedMinLen() rows (few: wkv_long * H < 2 * SMs) take the chunked recurrence, the
  // rest the sequential one. wkv_order lists the items long ones first (StepMetaViews'
  // wkv_* arrays follow it). 0 when the whole step takes one kernel (wkv_chunked says which).
  int wkv_long = 0;
  std::vector<int> wkv_order;
};

// Device views of the metadata block (or the same views on the pinned host copy).
struct StepMetaViews {
  int* tokens = nullptr;                    // [rows]
  int* row_item = nullptr;                  // [rows]
  int* item_row0 = nullptr;                 // [items]
  int* item_len = nullptr;                  // [items]
  int* logit_rows = nullptr;                // [max(1, logit rows)]
  float** item_state = nullptr;             // [items] state block of each item's session
  kernels::AttnItem* attn_items = nullptr;  // [M][items]
  kernels::SampleItem* samp = nullptr;      // [n_samp]
  int* adj_tok = nullptr;                   // [n_adjust]
  float* adj_val = nullptr;                 // [n_adjust]
  uint32_t* mask = nullptr;                 // [n_mask_words]
  void*** pt_dst = nullptr;                 // [page-table updates]
  void** pt_val = nullptr;                  // [page-table updates]
  int* wkv_row0 = nullptr;                  // [items] item_row0 in wkv_order (split steps)
  int* wkv_len = nullptr;                   // [items] item_len in wkv_order
  float** wkv_state = nullptr;              // [items] item_state in wkv_order
  int* out_token = nullptr;                 // [n_samp] written by the sampler
  float* out_logprob = nullptr;             // [n_samp] written by the sampler
};

// Byte offsets in the metadata block, each array 16-byte aligned, in this order. The
// upload covers [0, out_tok); the sampler's outputs [out_tok, total) come back.
struct StepMetaLayout {
  size_t tokens = 0, row_item = 0, row0 = 0, len = 0, logit_rows = 0, state = 0, attn = 0, samp = 0, adj_tok = 0,
         adj_val = 0, mask = 0, pt_dst = 0, pt_val = 0, wkv_row0 = 0, wkv_len = 0, wkv_state = 0, out_tok = 0,
         out_lp = 0, total = 0;
  static StepMetaLayout For(const StepPlan& plan, int M);
  StepMetaViews At(char* base) const;
};

}  // namespace rwkvx::cuda
