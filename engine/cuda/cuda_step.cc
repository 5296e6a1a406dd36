// CudaBackend::Step / StepSampled: the step's phases in order (engine/cuda/step_plan.h
// lists them and where each one lives). Every projection is one GEMM over all rows.
// A step mixing decode and prefill items may run as two sub-steps (split_mixed_steps).
// A failure that leaves the context unusable (Healthy() false) is a BackendLostError.
#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/step_plan.h"
#include "engine/status_macros.h"

namespace rwkvx::cuda {

absl::Status CudaBackend::RunStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                  std::vector<SampledToken>* sampled, bool wait) {
  if (in_flight_.active) return absl::FailedPreconditionError("a step is in flight (BeginStep without EndStep)");
  logits->clear();
  if (sampled) sampled->clear();
  if (items.empty()) return absl::OkStatus();
  if (opts_.cuda_graphs && opts_.split_mixed_steps) {
    int decode = 0;
    for (const StepInput& in : items) decode += in.tokens.size() == 1;
    if (decode > 0 && decode < static_cast<int>(items.size())) return RunSplitStep(items, logits, sampled);
  }
  return RunOneStep(items, logits, sampled, wait);
}

absl::Status CudaBackend::EndStep() {
  if (!in_flight_.active) return absl::OkStatus();  // a step BeginStep ran whole
  in_flight_.active = false;
  absl::Status st = FinishStep(in_flight_.layout, in_flight_.n_samp, in_flight_.sampled);
  if (!st.ok() && !Healthy()) return BackendLostError(absl::StrCat("CUDA context lost: ", st.message()));
  return st;
}

// Decode items first, then prefill items; the outputs are merged back into item order.
// The whole step is planned first (validation and the memory check of both parts
// together), so the second part cannot fail for memory after the first ran.
absl::Status CudaBackend::RunSplitStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                       std::vector<SampledToken>* sampled) {
  RWKVX_RETURN_IF_ERROR(PlanStep(items, /*device_sampling=*/sampled != nullptr, &step_));
  std::vector<StepInput> part[2];
  for (const StepInput& in : items) part[in.tokens.size() == 1 ? 0 : 1].push_back(in);
  std::vector<float> lg[2];
  std::vector<SampledToken> sm[2];
  for (int k = 0; k < 2; ++k) RWKVX_RETURN_IF_ERROR(RunOneStep(part[k], &lg[k], sampled ? &sm[k] : nullptr));
  const size_t V = static_cast<size_t>(V_);
  size_t lpos[2] = {0, 0}, spos[2] = {0, 0};
  for (const StepInput& in : items) {
    const int k = in.tokens.size() == 1 ? 0 : 1;
    if (in.sample) {
      sampled->push_back(sm[k][spos[k]++]);
    } else if (in.want_logits) {
      logits->insert(logits->end(), lg[k].begin() + lpos[k] * V, lg[k].begin() + (lpos[k] + 1) * V);
      ++lpos[k];
    }
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RunOneStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                     std::vector<SampledToken>* sampled, bool wait) {
  bool reserved = false;
  absl::Status st = [&]() -> absl::Status {
    RWKVX_RETURN_IF_ERROR(PlanStep(items, /*device_sampling=*/sampled != nullptr, &step_));
    RWKVX_RETURN_IF_ERROR(ReserveStep(&step_));
    reserved = true;
    const StepMetaLayout layout = StepMetaLayout::For(step_, M_);
    RWKVX_RETURN_IF_ERROR(UploadStep(items, step_, layout));
    RWKVX_RETURN_IF_ERROR(ForwardOrReplay(step_));
    RWKVX_RETURN_IF_ERROR(CommitStep(&step_, layout, logits, sampled));
    if (!wait) {  // EndStep finishes it; the sessions' bookkeeping is already done
      in_flight_ = InFlight{true, layout, step_.n_samp, sampled};
      return absl::OkStatus();
    }
    return FinishStep(layout, step_.n_samp, sampled);
  }();
  if (!st.ok() && reserved) {  // compaction targets not taken over are given back
    DropCompactionTargets(&step_);
    ForgetDeviceTables(&step_);
  }
  // A sticky error (illegal address, launch failure) poisons the context: say so.
  if (!st.ok() && !Healthy()) return BackendLostError(absl::StrCat("CUDA context lost: ", st.message()));
  return st;
}

}  // namespace rwkvx::cuda
