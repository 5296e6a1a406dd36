// CudaBackend::UploadStep: the step's metadata (tokens, row -> item, item rows and state
// blocks, per sparse layer an AttnItem per item, the sampling requests, the page-table
// updates) goes into one pinned block in the layout of StepMetaLayout and up in one copy;
// a kernel then writes the page-table updates.
#include <algorithm>
#include <cstring>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/page_table.cuh"

namespace rwkvx::cuda {

absl::Status CudaBackend::UploadStep(const std::vector<StepInput>& items, const StepPlan& plan,
                                     const StepMetaLayout& layout) {
  if (layout.total > meta_cap_) {
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
    DropGraphs();  // they hold metadata pointers
    if (meta_dev_) RWKVX_CUDA_RETURN(cudaFree(meta_dev_));
    if (meta_host_) RWKVX_CUDA_RETURN(cudaFreeHost(meta_host_));
    meta_cap_ = std::max(layout.total, meta_cap_ * 2);
    RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&meta_dev_), meta_cap_));
    RWKVX_CUDA_RETURN(cudaMallocHost(reinterpret_cast<void**>(&meta_host_), meta_cap_));
  }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));  // the pinned block may still be in flight
  const StepMetaViews h = layout.At(meta_host_);
  const int nitems = plan.items;
  for (int b = 0; b < nitems; ++b)
    for (int t = 0; t < plan.len[b]; ++t) {
      h.tokens[plan.row0[b] + t] = b < plan.real_items ? items[b].tokens[t] : 0;
      h.row_item[plan.row0[b] + t] = b;
    }
  std::memcpy(h.item_row0, plan.row0.data(), nitems * sizeof(int));
  std::memcpy(h.item_len, plan.len.data(), nitems * sizeof(int));
  if (!plan.logit_rows.empty())
    std::memcpy(h.logit_rows, plan.logit_rows.data(), plan.logit_rows.size() * sizeof(int));
  for (int b = 0; b < nitems; ++b) h.item_state[b] = plan.sess[b]->state;
  for (int j = 0; j < M_; ++j)
    std::copy(plan.attn_items[j].begin(), plan.attn_items[j].end(), h.attn_items + static_cast<size_t>(j) * nitems);
  int na = 0;
  size_t nm = 0;
  for (int j = 0; j < plan.n_samp; ++j) {
    const DeviceSampling& ds = *items[plan.samp_items[j]].sample;
    kernels::SampleItem& si = h.samp[j];
    si.row = plan.n_host + j;
    si.temperature = ds.temperature;
    si.top_p = ds.top_p;
    si.top_k = ds.top_k;
    si.uniform = ds.uniform;
    si.adj0 = na;
    si.nadj = static_cast<int>(ds.adjust.size());
    for (const auto& [t, v] : ds.adjust) {
      h.adj_tok[na] = t;
      h.adj_val[na++] = v;
    }
    si.mask0 = -1;
    si.nmask = 0;
    if (!ds.allowed.empty()) {
      si.mask0 = static_cast<int>(nm);
      si.nmask = static_cast<int>(ds.allowed.size());
      std::memcpy(h.mask + nm, ds.allowed.data(), ds.allowed.size() * sizeof(uint32_t));
      nm += ds.allowed.size();
    }
  }
  if (plan.wkv_long > 0) {
    for (int k = 0; k < nitems; ++k) {
      const int b = plan.wkv_order[k];
      h.wkv_row0[k] = plan.row0[b];
      h.wkv_len[k] = plan.len[b];
      h.wkv_state[k] = plan.sess[b]->state;
    }
  }
  std::copy(plan.pt_dst.begin(), plan.pt_dst.end(), h.pt_dst);
  std::copy(plan.pt_val.begin(), plan.pt_val.end(), h.pt_val);
  // Everything up to the sampler's outputs goes up; then the page tables take their new
  // entries (before any kernel of the step reads them).
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(meta_dev_, meta_host_, layout.out_tok, cudaMemcpyHostToDevice, stream_));
  meta_ = layout.At(meta_dev_);
  kernels::PageTableUpdateParams pu;
  pu.dst = meta_.pt_dst;
  pu.val = meta_.pt_val;
  pu.n = static_cast<int>(plan.pt_dst.size());
  RWKVX_CUDA_RETURN(kernels::LaunchPageTableUpdate(pu, stream_));
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
