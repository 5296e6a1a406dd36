// CudaBackend's projections: a weight-bound GEMV (kernels/gemv.cuh) for steps of at most
// kGemvMaxRows rows, with CudaBackendOptions::skinny_mma (default) the tensor-core skinny
// kernel (kernels/gemm_skinny.cuh) up to 16 rows (32 with 8-bit weights), cuBLAS GEMMs
// (fp16/bf16 inputs, fp32 accumulation) above; in the batch-invariant mode one kernel per
// shape for every row count (InvariantJobs). 8-bit weights (DeviceModel::w8, E4M3 or
// int8): the GEMV and the skinny kernel read them directly; for a cuBLAS GEMM they are
// first dequantized into the model's half scratch (kernels/fp8.cuh), one run of matrices
// at a time.
#include <algorithm>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/fp8.cuh"
#include "kernels/gemm_invariant.cuh"
#include "kernels/gemm_skinny.cuh"
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
  p.fold_mix = mix;
  return p;
}

// A GEMV group launch, with the pending folded LayerNorm or state copy attached (one of
// them at most; the copy that a fold with a state leaves goes to the next launch).
absl::Status CudaBackend::LaunchGemvs(kernels::GemvGroupParams g) {
  g.prefetch_w = opts_.gemv_prefetch < 0 ? C_ <= kGemvPrefetchMaxC : opts_.gemv_prefetch > 0;
  if (fold_next_.x) {
    g.fold = fold_next_;
    RWKVX_CUDA_RETURN(kernels::LaunchGemvGroup(g, stream_));
    return absl::OkStatus();  // every launch of the group folds (fold_next_ stays until the caller's jobs end)
  }
  if (save_next_.src) {
    g.save = save_next_;
    save_next_ = {};
  }
  RWKVX_CUDA_RETURN(kernels::LaunchGemvGroup(g, stream_));
  return absl::OkStatus();
}

kernels::GemvParams CudaBackend::GemvOf(const GemmJob& q, int rows) const {
  kernels::GemvParams p = q.Gemv(dev_->bf16, rows);
  p.w_scale = dev_->ScaleOf(q.w);
  p.w_int8 = p.w_scale && dev_->w8_fmt == kernels::W8::kInt8;
  p.ksplit = GemvSplit(p.in, p.w_scale != nullptr);
  return p;
}

// CudaBackendOptions::gemv_split for a product of input width `in` (w8: 8-bit weights, 16
// a load, else 8): the shape and the option alone decide, so a row's sums are the same in
// every step.
int CudaBackend::GemvSplit(int in, bool w8) const {
  if (opts_.gemv_split > 0) return opts_.gemv_split;
  if (opts_.gemv_split == 0 || C_ > kGemvPrefetchMaxC) return 1;
  const int loads = (in / (w8 ? 16 : 8) + 31) / 32;  // a lane's loads with one warp a row
  int k = 1;
  while (k < 4 && (loads + k - 1) / k > kGemvSplitLoads) k *= 2;
  return k;
}

bool CudaBackend::GemvFits(const GemmJob& q, int rows) const {
  return rows <= kernels::kGemvMaxRows && q.in % (dev_->ScaleOf(q.w) ? 16 : 8) == 0;
}

// Where the skinny kernel beat cuBLAS on the H200 (docs/CUDA.md, "Skinny products"): half
// weights up to 16 rows (3.6B at 32 rows: 7.03 ms against cuBLAS's 6.00), 8-bit weights up
// to its limit of 32 (cuBLAS would read a dequantized half copy).
bool CudaBackend::SkinnyFits(const GemmJob& q, int rows) const {
  if (!opts_.skinny_mma || rows < kernels::kSkinnyMinRows) return false;
  const int max_rows = dev_->ScaleOf(q.w) ? kernels::kSkinnyMaxRows : kSkinnyMaxRowsHalf;
  return rows <= max_rows && kernels::SkinnyFits(GemvOf(q, rows));
}

absl::Status CudaBackend::Dequant(const void* w, int out, int in) {
  if (static_cast<size_t>(out) * in > dev_->deq_elems) return absl::InternalError("8-bit dequant scratch too small");
  kernels::Fp8DequantParams d;
  d.q = static_cast<const uint8_t*>(w);
  d.scale = dev_->ScaleOf(w);
  d.fmt = dev_->w8_fmt;
  d.out = dev_->deq;
  d.bf16 = dev_->bf16;
  d.rows = out;
  d.in = in;
  RWKVX_CUDA_RETURN(kernels::LaunchDequantFp8(d, stream_));
  return absl::OkStatus();
}

// Batch-invariant mode (CudaBackendOptions::batch_invariant): each product runs in the
// kernel that its shape alone picks, whatever the row count: the skinny kernel (32-row
// slabs past 32 rows; from kInvariantTileRows rows with half weights the tiled kernel of
// kernels/gemm_invariant.cuh, which sums every output exactly as the skinny kernel does)
// where the input width fits it, else the GEMV one slab of up to 4 rows at a time
// (synthetic shapes only: every released checkpoint's widths fit the skinny kernel). Each
// sums a row the same way in any slab or tile, so a row's outputs are the same bits in
// any step.
absl::Status CudaBackend::InvariantJobs(const GemmJob* jobs, int n, int rows) {
  kernels::GemvGroupParams g, tiled;
  for (int j = 0; j < n; ++j) {
    const kernels::GemvParams p = GemvOf(jobs[j], rows);
    if (rows >= kInvariantTileRows && kernels::InvariantGemmFits(p)) {  // many rows: tiles, the same bits
      tiled.job[tiled.n_jobs++] = p;
      if (tiled.n_jobs == kernels::kGemvMaxJobs) {
        RWKVX_CUDA_RETURN(kernels::LaunchInvariantGemm(tiled, stream_));
        tiled.n_jobs = 0;
      }
      continue;
    }
    if (kernels::SkinnyShapeFits(p)) {
      g.job[g.n_jobs++] = p;
      if (g.n_jobs == kernels::kGemvMaxJobs) {
        RWKVX_CUDA_RETURN(kernels::LaunchSkinnyGroup(g, stream_));
        g.n_jobs = 0;
      }
      continue;
    }
    if (p.in % (p.w_scale ? 16 : 8) != 0)
      return absl::InvalidArgumentError(absl::StrCat("batch-invariant mode: a projection of input width ", p.in,
                                                     " (needs a multiple of ", p.w_scale ? 16 : 8, ")"));
    for (int r0 = 0; r0 < rows; r0 += kernels::kGemvMaxRows) {
      kernels::GemvParams s = p;
      s.rows = std::min(kernels::kGemvMaxRows, rows - r0);
      s.x = static_cast<const char*>(p.x) + static_cast<size_t>(r0) * p.in * 2;
      if (p.y) s.y = p.y + static_cast<size_t>(r0) * p.out;
      if (p.y_half) s.y_half = static_cast<char*>(p.y_half) + static_cast<size_t>(r0) * p.out * 2;
      RWKVX_CUDA_RETURN(kernels::LaunchGemv(s, stream_));
    }
  }
  if (g.n_jobs > 0) RWKVX_CUDA_RETURN(kernels::LaunchSkinnyGroup(g, stream_));
  if (tiled.n_jobs > 0) RWKVX_CUDA_RETURN(kernels::LaunchInvariantGemm(tiled, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::GemmOne(const GemmJob& q, int rows) {
  if (opts_.batch_invariant) return InvariantJobs(&q, 1, rows);
  if (GemvFits(q, rows)) {  // decode of a few sessions: weight-bound GEMV
    kernels::GemvGroupParams g;
    g.job[0] = GemvOf(q, rows);
    g.n_jobs = 1;
    // The residual adds (Gemm with accumulate: the Wo and channel-mix value products) load
    // the residual before the PDL wait (EarlyReads): the kernel right before them (the time
    // mix, the attention, the channel-mix key group) never writes ws_.x (kernels/gemv.cuh).
    g.y_early = q.accumulate && EarlyReads();
    const bool folded = fold_next_.x != nullptr;
    RWKVX_RETURN_IF_ERROR(LaunchGemvs(g));
    if (folded) EndFold();
    return absl::OkStatus();
  }
  if (fold_next_.x || save_next_.src) return absl::InternalError("a folded LayerNorm outside the GEMV path");
  if (SkinnyFits(q, rows)) {  // a few dozen rows: tensor cores, the weights read once
    kernels::GemvGroupParams g;
    g.job[0] = GemvOf(q, rows);
    g.n_jobs = 1;
    RWKVX_CUDA_RETURN(kernels::LaunchSkinnyGroup(g, stream_));
    return absl::OkStatus();
  }
  const void* w = q.w;
  if (dev_->ScaleOf(w)) {  // 8-bit: the GEMM reads the half copy
    RWKVX_RETURN_IF_ERROR(Dequant(w, q.out, q.in));
    w = dev_->deq;
  }
  const float alpha = 1.f, beta = q.accumulate ? 1.f : 0.f;
  const cudaDataType_t t = dev_->bf16 ? CUDA_R_16BF : CUDA_R_16F;
  void* y = q.y ? static_cast<void*>(q.y) : q.y_half;
  RWKVX_CUBLAS_RETURN(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, q.out, rows, q.in, &alpha, w, t, q.in, q.x, t,
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
  if (opts_.batch_invariant) return InvariantJobs(jobs, n, rows);
  bool grouped = true;
  for (int j = 0; j < n; ++j) grouped = grouped && GemvFits(jobs[j], rows);
  if (grouped) {  // decode of a few sessions: up to kGemvMaxJobs products per launch
    const bool folded = fold_next_.x != nullptr;
    for (int j0 = 0; j0 < n; j0 += kernels::kGemvMaxJobs) {
      kernels::GemvGroupParams g;
      g.n_jobs = std::min(n - j0, kernels::kGemvMaxJobs);
      for (int j = 0; j < g.n_jobs; ++j) g.job[j] = GemvOf(jobs[j0 + j], rows);
      RWKVX_RETURN_IF_ERROR(LaunchGemvs(g));
    }
    if (folded) EndFold();
    return absl::OkStatus();
  }
  if (fold_next_.x || save_next_.src) return absl::InternalError("a folded LayerNorm outside the GEMV path");
  // A few dozen rows: the jobs the skinny kernel takes, up to kGemvMaxJobs a launch; the
  // others (if any) below. The jobs of one call are independent products.
  GemmJob rest[kMaxGemmJobs];
  int n_rest = 0;
  if (opts_.skinny_mma && n <= kMaxGemmJobs) {
    kernels::GemvGroupParams g;
    for (int j = 0; j < n; ++j) {
      if (!SkinnyFits(jobs[j], rows)) {
        rest[n_rest++] = jobs[j];
        continue;
      }
      g.job[g.n_jobs++] = GemvOf(jobs[j], rows);
      if (g.n_jobs == kernels::kGemvMaxJobs) {
        RWKVX_CUDA_RETURN(kernels::LaunchSkinnyGroup(g, stream_));
        g.n_jobs = 0;
      }
    }
    if (g.n_jobs > 0) RWKVX_CUDA_RETURN(kernels::LaunchSkinnyGroup(g, stream_));
    if (n_rest == 0) return absl::OkStatus();
    jobs = rest;
    n = n_rest;
  }
  // cuBLAS: half weights as they are; a run of 8-bit matrices that lie back to back with
  // their scales (the r/k/v triple) dequantized at once, then the same GEMMs on the copy.
  for (int j = 0; j < n;) {
    const float* sc = dev_->ScaleOf(jobs[j].w);
    if (!sc) {
      int k = j + 1;
      while (k < n && !dev_->ScaleOf(jobs[k].w)) ++k;
      RWKVX_RETURN_IF_ERROR(GemmHalfJobs(jobs + j, k - j, rows));
      j = k;
      continue;
    }
    const GemmJob& q = jobs[j];
    const size_t elems = static_cast<size_t>(q.out) * q.in;
    int run = 1;
    while (j + run < n && run < kMaxDeqRun && jobs[j + run].out == q.out && jobs[j + run].in == q.in &&
           static_cast<const char*>(jobs[j + run].w) == static_cast<const char*>(q.w) + run * elems &&
           dev_->ScaleOf(jobs[j + run].w) == sc + run * q.out && (run + 1) * elems <= dev_->deq_elems)
      ++run;
    RWKVX_RETURN_IF_ERROR(Dequant(q.w, run * q.out, q.in));
    GemmJob copy[kMaxDeqRun];
    for (int k = 0; k < run; ++k) {
      copy[k] = jobs[j + k];
      copy[k].w = static_cast<const char*>(dev_->deq) + k * elems * 2;
    }
    RWKVX_RETURN_IF_ERROR(GemmHalfJobs(copy, run, rows));
    j += run;
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::GemmHalfJobs(const GemmJob* jobs, int n, int rows) {
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
