// The tensor-core skinny kernel (kernels/gemm_skinny.cuh) against a double-precision
// product for 1..70 rows (past 32 in slabs): half weights (fp16 and bf16) and 8-bit ones (E4M3 and int8 with
// per-row scales), float outputs (set and accumulate) and half outputs with an
// activation, odd output counts (partial tiles), groups of jobs with the same bits as each
// job alone, repeat launches with the same bits, a row's bits independent of the row count,
// and widths it cannot take refused.
// Built only with CUDA; skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"

#ifdef RWKVX_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/fp8.cuh"
#include "kernels/gemm_invariant.cuh"
#include "kernels/gemm_skinny.cuh"
#include "tests/cuda/cuda_buffers.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

enum class Wt { kHalf, kE4M3, kInt8 };
const char* Name(Wt w) { return w == Wt::kHalf ? "half" : w == Wt::kE4M3 ? "e4m3" : "int8"; }

// Half values as the kernel sees them (fp16 or bf16 bits, and their float value).
struct HalfVec {
  std::vector<uint16_t> bits;
  std::vector<float> val;
};
HalfVec ToHalf(const std::vector<float>& f, bool bf16) {
  HalfVec h;
  for (float v : f) {
    uint16_t b;
    float back;
    if (bf16) {
      const __nv_bfloat16 x = __float2bfloat16_rn(v);
      std::memcpy(&b, &x, 2);
      back = __bfloat162float(x);
    } else {
      const __half x = __float2half_rn(v);
      std::memcpy(&b, &x, 2);
      back = __half2float(x);
    }
    h.bits.push_back(b);
    h.val.push_back(back);
  }
  return h;
}

float DecodeCode(Wt w, uint8_t b) {
  if (w == Wt::kInt8) return static_cast<float>(static_cast<int8_t>(b));
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const float v = e == 0 ? std::ldexp(m / 8.f, -6) : std::ldexp(1.f + m / 8.f, e - 7);
  return s ? -v : v;
}

struct Job {
  kernels::GemvParams p;       // for the group
  kernels::GemvParams alone;   // the same product, its own outputs
  std::vector<float> w;        // effective weights (decoded * scale, or the half values)
  std::vector<float> x, y0;
  bool half_out;
};

Job MakeJob(Wt wt, bool bf16, int rows, int out, int in, bool half_out, bool accumulate, kernels::Act act,
            std::mt19937& g) {
  Job j;
  j.half_out = half_out;
  const auto wf = Rand(static_cast<size_t>(out) * in, g, -0.5f, 0.5f);
  kernels::GemvParams& p = j.p;
  if (wt == Wt::kHalf) {
    const HalfVec h = ToHalf(wf, bf16);
    p.w = Dev(h.bits);
    j.w = h.val;
  } else {
    kernels::Fp8QuantParams q;
    q.w = Dev(wf);
    q.q = Dev(std::vector<uint8_t>(wf.size()));
    q.scale = Dev(std::vector<float>(out));
    q.rows = out;
    q.in = in;
    q.fmt = wt == Wt::kInt8 ? kernels::W8::kInt8 : kernels::W8::kE4M3;
    EXPECT_EQ(kernels::LaunchQuantizeFp8Rows(q, 0), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto codes = Host(q.q, wf.size());
    const auto sc = Host(q.scale, out);
    for (size_t e = 0; e < codes.size(); ++e) j.w.push_back(DecodeCode(wt, codes[e]) * sc[e / in]);
    p.w = q.q;
    p.w_scale = q.scale;
    p.w_int8 = wt == Wt::kInt8;
  }
  const HalfVec xh = ToHalf(Rand(static_cast<size_t>(rows) * in, g, -1, 1), bf16);
  j.x = xh.val;
  p.x = Dev(xh.bits);
  j.y0 = Rand(static_cast<size_t>(rows) * out, g, -1, 1);
  p.rows = rows;
  p.out = out;
  p.in = in;
  p.bf16 = bf16;
  p.accumulate = accumulate;
  p.act = act;
  j.alone = p;
  if (half_out) {
    p.y_half = Dev(std::vector<uint16_t>(static_cast<size_t>(rows) * out, 0xFFFF));
    j.alone.y_half = Dev(std::vector<uint16_t>(static_cast<size_t>(rows) * out, 0xFFFF));
  } else {
    p.y = Dev(j.y0);
    j.alone.y = Dev(j.y0);
  }
  return j;
}

std::vector<float> Out(const Job& j, const kernels::GemvParams& p) {
  const size_t n = static_cast<size_t>(p.rows) * p.out;
  if (!j.half_out) return Host(p.y, n);
  const auto b = Host(static_cast<const uint16_t*>(p.y_half), n);
  std::vector<float> f(n);
  for (size_t e = 0; e < n; ++e) {
    if (p.bf16) {
      __nv_bfloat16_raw r;
      r.x = b[e];
      f[e] = __bfloat162float(__nv_bfloat16(r));
    } else {
      __half_raw r;
      r.x = b[e];
      f[e] = __half2float(__half(r));
    }
  }
  return f;
}

double Act(kernels::Act a, double v) {
  switch (a) {
    case kernels::Act::kTanh: return std::tanh(v);
    case kernels::Act::kSigmoid: return 1 / (1 + std::exp(-v));
    case kernels::Act::kReluSq: return v > 0 ? v * v : 0;
    default: return v;
  }
}

TEST(CudaKernels, SkinnyMatchesDoubleReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(11);
  for (Wt wt : {Wt::kHalf, Wt::kE4M3, Wt::kInt8})
    for (bool bf16 : {false, true})
      for (int rows : {1, 5, 8, 9, 16, 17, 32, 33, 70}) {  // 33, 70: slabs of 32 (kSkinnySlabRows)
        // (out, in): partial tiles, one window, many windows, an odd window count per warp.
        std::vector<Job> jobs;
        jobs.push_back(MakeJob(wt, bf16, rows, 37, 256, false, false, kernels::Act::kNone, g));
        jobs.push_back(MakeJob(wt, bf16, rows, 64, 768, true, false, kernels::Act::kReluSq, g));
        jobs.push_back(MakeJob(wt, bf16, rows, 130, 2560, false, true, kernels::Act::kNone, g));
        jobs.push_back(MakeJob(wt, bf16, rows, 16, 64 * 9, true, false, kernels::Act::kTanh, g));
        kernels::GemvGroupParams grp;
        for (const Job& j : jobs) grp.job[grp.n_jobs++] = j.p;
        CK(kernels::LaunchSkinnyGroup(grp, 0));
        for (const Job& j : jobs) {
          kernels::GemvGroupParams one;
          one.job[0] = j.alone;
          one.n_jobs = 1;
          CK(kernels::LaunchSkinnyGroup(one, 0));
        }
        CK(cudaDeviceSynchronize());
        for (size_t k = 0; k < jobs.size(); ++k) {
          const Job& j = jobs[k];
          const auto got = Out(j, j.p), got_alone = Out(j, j.alone);
          ASSERT_EQ(got, got_alone) << Name(wt) << " bf16 " << bf16 << " rows " << rows << " job " << k;
          const kernels::GemvParams& p = j.p;
          for (int r = 0; r < rows; ++r)
            for (int o = 0; o < p.out; ++o) {
              double v = 0, mag = 0;
              for (int i = 0; i < p.in; ++i) {
                const double t = double(j.x[static_cast<size_t>(r) * p.in + i]) * j.w[static_cast<size_t>(o) * p.in + i];
                v += t;
                mag += std::abs(t);
              }
              if (p.accumulate) v += j.y0[static_cast<size_t>(r) * p.out + o];
              double want = v, tol = 1e-5 * mag + 1e-6;
              if (j.half_out) {  // the activation, then one rounding to 8 (bf16) or 11 (fp16) bits
                want = Act(p.act, v);
                const double slope = p.act == kernels::Act::kReluSq ? 2 * std::abs(v) : 1;
                tol = slope * (1e-5 * mag + 1e-6) + std::abs(want) * (bf16 ? 1.0 / 256 : 1.0 / 2048) + 1e-6;
              }
              ASSERT_NEAR(got[static_cast<size_t>(r) * p.out + o], want, tol)
                  << Name(wt) << " bf16 " << bf16 << " rows " << rows << " job " << k << " (" << r << "," << o << ")";
            }
        }
        // Once more into the same outputs: the same bits (no timing-dependent order).
        if (rows == 17) {
          const Job& j = jobs[0];
          const auto first = Out(j, j.alone);
          kernels::GemvParams again = j.alone;
          again.y = Dev(j.y0);
          kernels::GemvGroupParams one;
          one.job[0] = again;
          one.n_jobs = 1;
          CK(kernels::LaunchSkinnyGroup(one, 0));
          CK(cudaDeviceSynchronize());
          EXPECT_EQ(Out(j, again), first);
        }
      }
}

// A row's result does not depend on how many rows share the step (1..32: one, two or four
// column tiles; more: slabs of 32) or where it sits: each MMA column is its own dot
// product, the K windows go to the warps by position and the warps' sums are added in a
// fixed order. (The backend switches between the GEMV, this kernel and cuBLAS by row
// count, except in its batch-invariant mode: tests/cuda/batch_invariant_test.cc.)
TEST(CudaKernels, SkinnyRowsDoNotDependOnTheBatch) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(13);
  for (Wt wt : {Wt::kHalf, Wt::kInt8}) {
    const int out = 48, in = 512;
    Job base = MakeJob(wt, false, 97, out, in, false, false, kernels::Act::kNone, g);
    std::vector<float> first;
    for (int rows : {1, 5, 8, 9, 16, 17, 32, 33, 64, 97}) {
      // The same x row placed last of `rows` rows (the others are base's rows).
      const auto xs = Host(static_cast<const uint16_t*>(base.p.x), static_cast<size_t>(97) * in);
      std::vector<uint16_t> x(xs.begin(), xs.begin() + static_cast<size_t>(rows) * in);
      std::copy(xs.begin(), xs.begin() + in, x.begin() + static_cast<size_t>(rows - 1) * in);
      kernels::GemvParams p = base.p;
      p.x = Dev(x);
      p.rows = rows;
      p.y = Dev(std::vector<float>(static_cast<size_t>(rows) * out));
      kernels::GemvGroupParams one;
      one.job[0] = p;
      one.n_jobs = 1;
      CK(kernels::LaunchSkinnyGroup(one, 0));
      CK(cudaDeviceSynchronize());
      const auto y = Host(p.y, static_cast<size_t>(rows) * out);
      const std::vector<float> last(y.end() - out, y.end());
      if (first.empty()) first = last;
      ASSERT_EQ(last, first) << Name(wt) << " rows " << rows;
    }
  }
}

// The batch-invariant mode's tiled kernel (kernels/gemm_invariant.cuh) sums every output
// as the skinny kernel does: the same bits for 1..300 rows (partial row and output tiles),
// fewer windows than the skinny kernel's warps (in 64: two) and an odd count (in 576: 18),
// fp16 and bf16, float outputs (set and accumulate) and half outputs with an activation,
// a group of jobs; and it refuses 8-bit weights and widths it cannot take.
TEST(CudaKernels, InvariantGemmEqualsSkinny) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(17);
  for (bool bf16 : {false, true})
    for (int rows : {1, 37, 64, 130, 300}) {
      std::vector<Job> jobs;
      jobs.push_back(MakeJob(Wt::kHalf, bf16, rows, 37, 256, false, false, kernels::Act::kNone, g));
      jobs.push_back(MakeJob(Wt::kHalf, bf16, rows, 64, 768, true, false, kernels::Act::kReluSq, g));
      jobs.push_back(MakeJob(Wt::kHalf, bf16, rows, 130, 2560, false, true, kernels::Act::kNone, g));
      jobs.push_back(MakeJob(Wt::kHalf, bf16, rows, 16, 64 * 9, true, false, kernels::Act::kTanh, g));
      jobs.push_back(MakeJob(Wt::kHalf, bf16, rows, 70, 64, false, false, kernels::Act::kNone, g));
      kernels::GemvGroupParams tiled, skinny;
      for (const Job& j : jobs) {
        tiled.job[tiled.n_jobs++] = j.p;
        skinny.job[skinny.n_jobs++] = j.alone;
      }
      CK(kernels::LaunchInvariantGemm(tiled, 0));
      CK(kernels::LaunchSkinnyGroup(skinny, 0));
      CK(cudaDeviceSynchronize());
      for (size_t k = 0; k < jobs.size(); ++k) {
        const auto a = Out(jobs[k], jobs[k].p), b = Out(jobs[k], jobs[k].alone);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
            << "bf16 " << bf16 << " rows " << rows << " job " << k;
      }
    }
  Job q8 = MakeJob(Wt::kInt8, false, 70, 16, 128, false, false, kernels::Act::kNone, g);
  kernels::GemvGroupParams grp;
  grp.n_jobs = 1;
  grp.job[0] = q8.p;
  EXPECT_EQ(kernels::LaunchInvariantGemm(grp, 0), cudaErrorInvalidValue);
  Job half = MakeJob(Wt::kHalf, false, 70, 16, 64, false, false, kernels::Act::kNone, g);
  grp.job[0] = half.p;
  grp.job[0].in = 48;
  EXPECT_EQ(kernels::LaunchInvariantGemm(grp, 0), cudaErrorInvalidValue);
}

TEST(CudaKernels, SkinnyRefusesWhatItCannotTake) {
  SKIP_WITHOUT_GPU();
  std::mt19937 g(12);
  Job half = MakeJob(Wt::kHalf, false, 8, 16, 64, false, false, kernels::Act::kNone, g);
  kernels::GemvGroupParams grp;
  grp.n_jobs = 1;
  grp.job[0] = half.p;
  grp.job[0].in = 48;  // half weights: in % 32
  EXPECT_EQ(kernels::LaunchSkinnyGroup(grp, 0), cudaErrorInvalidValue);
  Job q8 = MakeJob(Wt::kInt8, false, 8, 16, 96, false, false, kernels::Act::kNone, g);
  grp.job[0] = q8.p;  // 8-bit weights: in % 64
  EXPECT_EQ(kernels::LaunchSkinnyGroup(grp, 0), cudaErrorInvalidValue);
  grp.job[0] = half.p;
  grp.job[0].rows = 0;
  EXPECT_EQ(kernels::LaunchSkinnyGroup(grp, 0), cudaErrorInvalidValue);
  grp.job[0] = half.p;
  grp.job[1] = half.p;
  grp.job[1].rows = 7;  // rows differ within a group
  grp.n_jobs = 2;
  EXPECT_EQ(kernels::LaunchSkinnyGroup(grp, 0), cudaErrorInvalidValue);
  grp.n_jobs = 0;
  EXPECT_EQ(kernels::LaunchSkinnyGroup(grp, 0), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace rwkvx
#endif  // RWKVX_HAVE_CUDA
