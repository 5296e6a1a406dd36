// CudaBackend::ReserveStep: makes room for a planned step. Every KV cache the step writes
// gets its pages (new ones past the end, private copies of shared ones it writes into);
// compressing caches get their compaction targets; the page tables' changed entries are
// queued for the device; the attention kernels' items point at the tables; the step
// workspace is sized.
#include <algorithm>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "engine/status_macros.h"
#include "kernels/attn_decode.cuh"

namespace rwkvx::cuda {

void CudaBackend::DropCompactionTargets(StepPlan* plan) {
  for (auto& layer : plan->attn)
    for (AttnPlan& p : layer) {
      ReleaseCache(&p.fresh);
      p.compress = false;
    }
}

absl::Status CudaBackend::ReserveStep(StepPlan* plan) {
  StepPlan& s = *plan;
  PageUpdates up;
  absl::Status st = [&]() -> absl::Status {
    // Pages first, then each table's device copy once (a table synced twice in one step
    // could move while updates to its old copy are still queued).
    for (int j = 0; j < M_; ++j)
      for (int b = 0; b < s.items; ++b) {
        AttnPlan& p = s.attn[j][b];
        const kernels::AttnItem& a = s.attn_items[j][b];
        if (p.compress) {
          // The compaction target: rows [0, a.ct) written by the compaction, the step's
          // rows after them.
          RWKVX_RETURN_IF_ERROR(GrowTable(&p.fresh.kv, KvPagesFor(a.ct + a.len)));
          RWKVX_RETURN_IF_ERROR(GrowTable(&p.fresh.sums, SumPagesFor(a.ct + a.len)));
        } else {
          RWKVX_RETURN_IF_ERROR(ReserveRows(&s.sess[b]->kv[j], a.len));
        }
      }
    for (int j = 0; j < M_; ++j)
      for (int b = 0; b < s.items; ++b) {
        AttnPlan& p = s.attn[j][b];
        kernels::AttnItem& a = s.attn_items[j][b];
        KvCache& kv = s.sess[b]->kv[j];
        RWKVX_RETURN_IF_ERROR(SyncCache(&kv, &up));  // the compaction reads the old cache
        KvCache& target = p.compress ? p.fresh : kv;
        if (p.compress) RWKVX_RETURN_IF_ERROR(SyncCache(&target, &up));
        a.kv = KvViewOf(target);
        a.sums = SumViewOf(target);
      }
    const size_t part_floats = s.any_decode ? kernels::AttnDecodeScratchFloats(s.items, H_, s.decode_splits) : 0;
    return EnsureWorkspace(s.rows, s.items, std::max<int>(1, s.logit_rows.size()), part_floats);
  }();
  if (!st.ok()) {
    DropCompactionTargets(plan);
    ForgetDeviceTables(plan);  // queued updates are dropped: resend them next time
    return st;
  }
  s.pt_dst = std::move(up.dst);
  s.pt_val = std::move(up.val);
  return absl::OkStatus();
}

void CudaBackend::ForgetDeviceTables(StepPlan* plan) {
  for (int b = 0; b < plan->items; ++b)
    for (KvCache& kv : plan->sess[b]->kv) kv.kv.synced = kv.sums.synced = 0;
}

}  // namespace rwkvx::cuda
