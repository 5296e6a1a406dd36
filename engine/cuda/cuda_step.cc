// CudaBackend::Step / StepSampled: the step's phases in order (engine/cuda/step_plan.h
// lists them and where each one lives). Every projection is one GEMM over all rows.
// A failure that leaves the context unusable (Healthy() false) is a BackendLostError.
#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/step_plan.h"
#include "engine/status_macros.h"

namespace rwkvx::cuda {

absl::Status CudaBackend::RunStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                  std::vector<SampledToken>* sampled) {
  logits->clear();
  if (sampled) sampled->clear();
  if (items.empty()) return absl::OkStatus();
  bool reserved = false;
  absl::Status st = [&]() -> absl::Status {
    RWKVX_RETURN_IF_ERROR(PlanStep(items, /*device_sampling=*/sampled != nullptr, &step_));
    RWKVX_RETURN_IF_ERROR(ReserveStep(&step_));
    reserved = true;
    const StepMetaLayout layout = StepMetaLayout::For(step_, M_);
    RWKVX_RETURN_IF_ERROR(UploadStep(items, step_, layout));
    RWKVX_RETURN_IF_ERROR(ForwardOrReplay(step_));
    return CommitStep(&step_, layout, logits, sampled);
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
