// CudaBackend::CommitStep: after the forward, the host rows' logits go to the host and the
// sampled rows through the sampler; the compaction targets replace the compressed caches
// and every KV cache takes its new length (pages given back are reused only by work
// queued after the step's) and the sessions' token counts; FinishStep waits for the stream
// and takes the sampled tokens (at once for Step, at EndStep for BeginStep).
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/sample.cuh"

namespace rwkvx::cuda {

absl::Status CudaBackend::CommitStep(StepPlan* step, const StepMetaLayout& layout, std::vector<float>* logits,
                                     std::vector<SampledToken>* sampled) {
  StepPlan& plan = *step;
  staged_logits_ = StagedLogits{};
  if (plan.n_host > 0) {
    const size_t floats = static_cast<size_t>(plan.n_host) * V_;
    if (floats * sizeof(float) <= PinnedLogitsLimit()) {
      // Pinned staging: the copy is a plain DMA at the end of the stream, and a step left in
      // flight (BeginStep) does not wait for it here; FinishStep moves the rows into
      // `logits`. No step is in flight now (RunStep refuses one), so the buffer is free.
      if (floats > logits_host_cap_) {
        if (logits_host_) RWKVX_CUDA_RETURN(cudaFreeHost(logits_host_));
        logits_host_ = nullptr;
        logits_host_cap_ = 0;
        RWKVX_CUDA_RETURN(cudaMallocHost(reinterpret_cast<void**>(&logits_host_), floats * sizeof(float)));
        logits_host_cap_ = floats;
      }
      RWKVX_CUDA_RETURN(
          cudaMemcpyAsync(logits_host_, ws_.logits, floats * sizeof(float), cudaMemcpyDeviceToHost, stream_));
      staged_logits_ = StagedLogits{logits, floats};
    } else {  // pageable: the driver stages it and the call returns once it is done
      logits->resize(floats);
      RWKVX_CUDA_RETURN(
          cudaMemcpyAsync(logits->data(), ws_.logits, floats * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    }
  }
  if (plan.n_samp > 0) {
    const size_t scratch = kernels::SampleScratchBytes(plan.n_samp, V_, opts_.sample_splits);
    if (scratch > samp_scratch_cap_) {  // no sampler work is in flight: every step ends synchronised
      if (samp_scratch_) RWKVX_CUDA_RETURN(cudaFree(samp_scratch_));
      samp_scratch_ = nullptr;
      samp_scratch_cap_ = 0;
      RWKVX_CUDA_RETURN(cudaMalloc(&samp_scratch_, scratch));
      samp_scratch_cap_ = scratch;
    }
    kernels::SampleParams sp;
    sp.logits = ws_.logits;
    sp.items = meta_.samp;
    sp.adj_tok = meta_.adj_tok;
    sp.adj_val = meta_.adj_val;
    sp.mask = meta_.mask;
    sp.n = plan.n_samp;
    sp.V = V_;
    sp.out_token = meta_.out_token;
    sp.out_logprob = meta_.out_logprob;
    sp.scratch = samp_scratch_;
    sp.splits = opts_.sample_splits;
    // Only the selection passes some row needs (the items' host copy is still in the
    // pinned block).
    sp.passes = kernels::SamplePasses(layout.At(meta_host_).samp, plan.n_samp, V_);
    RWKVX_CUDA_RETURN(kernels::LaunchSample(sp, stream_));
    RWKVX_CUDA_RETURN(cudaMemcpyAsync(meta_host_ + layout.out_tok, meta_dev_ + layout.out_tok,
                                      layout.total - layout.out_tok, cudaMemcpyDeviceToHost, stream_));
  }

  // Host-side bookkeeping (frees are stream-ordered after the step's work).
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < plan.real_items; ++b) {
      KvCache& kv = plan.sess[b]->kv[j];
      AttnPlan& p = plan.attn[j][b];
      if (p.compress) {
        ReleaseCache(&kv);  // pages back to the pool (reused only by work queued after)
        kv = std::move(p.fresh);
        p.fresh = KvCache{};  // the session owns it now
      }
      kv.ct = plan.attn_items[j][b].ct + plan.len[b];
    }
  for (int b = 0; b < plan.real_items; ++b) plan.sess[b]->tokens_seen += plan.len[b];
  return absl::OkStatus();
}

size_t CudaBackend::PinnedLogitsLimit() const {
  if (opts_.pinned_logits_bytes < 0) return size_t{16} << 20;
  return static_cast<size_t>(opts_.pinned_logits_bytes);
}

absl::Status CudaBackend::FinishStep(const StepMetaLayout& layout, int n_samp, std::vector<SampledToken>* sampled) {
  const StagedLogits staged = staged_logits_;
  staged_logits_ = StagedLogits{};
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  RWKVX_CUDA_RETURN(cudaGetLastError());
  if (staged.floats > 0) staged.dst->assign(logits_host_, logits_host_ + staged.floats);
  if (n_samp > 0) {
    const StepMetaViews h = layout.At(meta_host_);
    sampled->resize(n_samp);
    for (int j = 0; j < n_samp; ++j) (*sampled)[j] = SampledToken{h.out_token[j], h.out_logprob[j]};
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
