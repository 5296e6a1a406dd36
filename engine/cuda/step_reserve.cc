// CudaBackend::ReserveStep: makes room for a planned step. Grows the KV caches the plan
// names (rows and chunk sums copied, stream-ordered), allocates the compaction targets,
// points the attention kernels' items at the buffers and sizes the step workspace.
#include <cuda_fp16.h>

#include <algorithm>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/attn_decode.cuh"

namespace rwkvx::cuda {

void CudaBackend::DropCompactionTargets(StepPlan* plan) {
  for (auto& layer : plan->attn)
    for (AttnPlan& p : layer) {
      if (p.fresh.k) FreeKv(&p.fresh);
      p.fresh = KvCache{};
      p.compress = false;
    }
}

absl::Status CudaBackend::ReserveStep(StepPlan* plan) {
  StepPlan& s = *plan;
  const int Bc = model_->attn.chunk_size;
  // --- Grow caches (copy rows and sums) and allocate compaction targets.
  for (auto& [kv, cap] : s.grows) {
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
  // On an allocation failure below, give back the compaction targets taken so far.
  for (int j = 0; j < M_; ++j)
    for (int b = 0; b < s.items; ++b) {
      AttnPlan& p = s.attn[j][b];
      kernels::AttnItem& a = s.attn_items[j][b];
      if (p.compress) {
        const int cap = p.fresh.cap;
        p.fresh.cap = 0;
        if (absl::Status st = AllocKv(&p.fresh, cap); !st.ok()) {
          DropCompactionTargets(plan);
          return st;
        }
      }
      const KvCache& src = p.compress ? p.fresh : s.sess[b]->kv[j];
      a.k = src.k;
      a.v = src.v;
      a.sums = src.sums;
    }
  const size_t part_floats = s.any_decode ? kernels::AttnDecodeScratchFloats(s.items, H_, s.decode_splits) : 0;
  if (absl::Status st = EnsureWorkspace(s.rows, s.items, std::max<int>(1, s.logit_rows.size()), part_floats);
      !st.ok()) {
    DropCompactionTargets(plan);
    return st;
  }
  return absl::OkStatus();
}

}  // namespace rwkvx::cuda
