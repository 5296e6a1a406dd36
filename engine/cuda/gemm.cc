// CudaBackend's projections: a weight-bound GEMV (kernels/gemv.cuh) for steps of at most
// kGemvMaxRows rows, cuBLAS GEMMs (fp16/bf16 inputs, fp32 accumulation) above.
#include <algorithm>
#include <cstddef>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/gemv.cuh"

namespace rwkvx::cuda {

kernels::GemvParams CudaBackend::GemmJob::Gemv(bool bf16, int rows) const {
  kernels::GemvParams p;
  p.x = x;
  p.w = w;
  p.y = y;
  p.y_half = y_half;
  p.accumulate = accumulate;
  p.act = act;
  p.bf16 = bf16;
  p.rows = rows;
  p.out = out;
  p.in = in;
  return p;
}

absl::Status CudaBackend::GemmOne(const GemmJob& q, int rows) {
  if (rows <= kernels::kGemvMaxRows && q.in % 8 == 0) {  // decode of a few sessions: weight-bound GEMV
    RWKVX_CUDA_RETURN(kernels::LaunchGemv(q.Gemv(dev_->bf16, rows), stream_));
    return absl::OkStatus();
  }
  const float alpha = 1.f, beta = q.accumulate ? 1.f : 0.f;
  const cudaDataType_t t = dev_->bf16 ? CUDA_R_16BF : CUDA_R_16F;
  void* y = q.y ? static_cast<void*>(q.y) : q.y_half;
  RWKVX_CUBLAS_RETURN(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, q.out, rows, q.in, &alpha, q.w, t, q.in, q.x, t,
                                   q.in, &beta, y, q.y ? CUDA_R_32F : t, q.out, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaBackend::Gemm(float* y, const void* x, const void* w, int rows, int out, int in, bool accumulate) {
  return GemmOne(GemmJob{y, nullptr, nullptr, x, w, out, in, accumulate}, rows);
}

absl::Status CudaBackend::GemmHalfOut(void* y, const void* x, const void* w, int rows, int out, int in) {
  return GemmOne(GemmJob{nullptr, y, nullptr, x, w, out, in}, rows);
}

namespace {
ptrdiff_t Bytes(const void* from, const void* to) {
  return static_cast<const char*>(to) - static_cast<const char*>(from);
}
}  // namespace

// How many jobs from jobs[0] run as one strided-batched GEMM: float32 outputs without an
// activation, one shape, and weights, inputs and outputs each at one fixed non-negative
// stride (the r, k, v projections: device_model.cc and the workspace place them so; any
// other run that happens to lie so is the same products in one launch).
int CudaBackend::BatchRun(const GemmJob* jobs, int n) {
  const GemmJob& q = jobs[0];
  if (n < 2 || !q.y || q.act != kernels::Act::kNone) return 1;
  const ptrdiff_t dw = Bytes(q.w, jobs[1].w), dx = Bytes(q.x, jobs[1].x), dy = Bytes(q.y, jobs[1].y);
  if (dw <= 0 || dx < 0 || dy <= 0 || dw % 2 || dx % 2 || dy % 4) return 1;
  int run = 1;
  for (; run < n; ++run) {
    const GemmJob& o = jobs[run];
    if (!o.y || o.act != kernels::Act::kNone || o.out != q.out || o.in != q.in || o.accumulate != q.accumulate ||
        Bytes(q.w, o.w) != run * dw || Bytes(q.x, o.x) != run * dx || Bytes(q.y, o.y) != run * dy)
      break;
  }
  return run;
}

absl::Status CudaBackend::GemmStrided(const GemmJob* jobs, int count, int rows) {
  const GemmJob& q = jobs[0];
  const float alpha = 1.f, beta = q.accumulate ? 1.f : 0.f;
  const cudaDataType_t t = dev_->bf16 ? CUDA_R_16BF : CUDA_R_16F;
  // Strides in elements (half weights and inputs, float outputs), as BatchRun checked them.
  const long long sw = Bytes(q.w, jobs[1].w) / 2, sx = Bytes(q.x, jobs[1].x) / 2, sy = Bytes(q.y, jobs[1].y) / 4;
  RWKVX_CUBLAS_RETURN(cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, q.out, rows, q.in, &alpha, q.w, t,
                                                 q.in, sw, q.x, t, q.in, sx, &beta, q.y, CUDA_R_32F, q.out, sy, count,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

absl::Status CudaBackend::GemmJobs(const GemmJob* jobs, int n, int rows) {
  bool grouped = rows <= kernels::kGemvMaxRows;
  for (int j = 0; j < n; ++j) grouped = grouped && jobs[j].in % 8 == 0;
  if (grouped) {  // decode of a few sessions: up to kGemvMaxJobs products per launch
    for (int j0 = 0; j0 < n; j0 += kernels::kGemvMaxJobs) {
      kernels::GemvGroupParams g;
      g.n_jobs = std::min(n - j0, kernels::kGemvMaxJobs);
      for (int j = 0; j < g.n_jobs; ++j) g.job[j] = jobs[j0 + j].Gemv(dev_->bf16, rows);
      RWKVX_CUDA_RETURN(kernels::LaunchGemvGroup(g, stream_));
    }
    return absl::OkStatus();
  }
  for (int j = 0; j < n; ++j) {
    const GemmJob& q = jobs[j];
    if (const int run = BatchRun(jobs + j, n - j); run > 1) {
      RWKVX_RETURN_IF_ERROR(GemmStrided(jobs + j, run, rows));
      j += run - 1;
      continue;
    }
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

}  // namespace rwkvx::cuda
