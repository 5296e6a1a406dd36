// CudaBackend: engine::Backend on one NVIDIA GPU. Weights in fp16/bf16, RWKV state in
// float32 (one device block per session: the "slot"), sparse-attention KV caches in fp16
// in pages of one pool, shared copy-on-write by forks, with running per-chunk key sums in
// pages of the same pool (engine/cuda/cuda_session.h, engine/cuda/kv_pool.h). A step runs every item's tokens through each projection as
// one cuBLAS GEMM; the rest is kernels/. Same semantics as the CPU reference (engine/cpu);
// docs/CUDA.md. Files: cuda_backend.cc (construction, sessions, snapshots, memory),
// cuda_step.cc (the step's phases, engine/cuda/step_plan.h lists them), model_forward.cc
// (embedding, blocks, head), gemm.cc (projections), step_workspace.cc, kv_pages.cc (paged
// KV caches and the memory figures).
//
// Names of the model's sizes (members C_ .. V_ below): C channels (n_embd), H heads of 64,
// R RWKV blocks, M sparse-attention blocks, F the channel mix's hidden size, V vocabulary.
//
// Ownership: the backend owns the device model, every session's buffers, the step
// workspace, the metadata blocks and the CUDA graphs; all are freed by the destructor.
// Threading: not thread-safe (Backend contract): one caller thread. All GPU work is issued
// on the backend's own stream; Step returns after the logits are on the host.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/cuda_session.h"
#include "engine/cuda/device_model.h"
#include "engine/cuda/kv_pool.h"
#include "engine/cuda/step_forward.h"
#include "engine/cuda/step_plan.h"
#include "kernels/activation.cuh"
#include "kernels/gemv.cuh"
#include "kernels/wkv7.cuh"

namespace rwkvx::cuda {

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(std::shared_ptr<const Model> model,
                                                         const CudaBackendOptions& opts);
  ~CudaBackend() override;

  std::string Name() const override { return "cuda"; }
  const Model& model() const override { return *model_; }
  absl::StatusOr<SessionId> CreateSession() override;
  absl::Status FreeSession(SessionId id) override;
  absl::StatusOr<SessionState> ExportSession(SessionId id) const override;
  absl::StatusOr<SessionId> ImportSession(const SessionState& state) override;
  // A device-to-device copy of the state block; the KV pages are shared copy-on-write (no
  // host round trip, no rounding: the copy continues bit for bit like the original).
  absl::StatusOr<SessionId> ForkSession(SessionId id) override;
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    return RunStep(items, logits, nullptr);
  }
  // Sampling on the GPU (kernels/sample.cuh): the head's rows for sampled items never
  // leave the device; the sampler's kernels run after the forward, (token, logprob) pairs
  // come back.
  bool SupportsDeviceSampling() const override { return true; }
  bool SplitInvariant() const override { return opts_.batch_invariant; }
  absl::Status StepSampled(const std::vector<StepInput>& items, std::vector<float>* logits,
                           std::vector<SampledToken>* sampled) override {
    return RunStep(items, logits, sampled);
  }
  // The step queued on the stream, then waited for (Backend::BeginStep). Everything the
  // host keeps about sessions (KV lengths, token counts, compaction targets) is updated
  // by BeginStep; EndStep only waits and copies the sampled tokens out of the pinned
  // block. Every other call queues its device work on the same stream (or synchronises
  // it), so it runs after the step in flight. A step that a mixed step splits in two
  // (split_mixed_steps) runs whole in BeginStep; so, in effect, does one whose logits rows
  // for the host exceed CudaBackendOptions::pinned_logits_bytes (their copy into the
  // caller's pageable vector waits for the stream); smaller ones go to a pinned buffer and
  // EndStep moves them into `logits`.
  absl::Status BeginStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                         std::vector<SampledToken>* sampled) override {
    return RunStep(items, logits, sampled, /*wait=*/false);
  }
  absl::Status EndStep() override;
  size_t SessionBytes(SessionId id) const override;
  size_t SessionKvTokens(SessionId id) const override;
  MemoryInfo Memory() const override;
  DeviceUsage Usage() const override;
  size_t MaxSessionBytes() const override;
  size_t SessionBytesFor(size_t kv_tokens) const override;
  size_t StepBytes(SessionId id, size_t tokens) const override;
  // False after a sticky CUDA error (illegal address, launch failure...): the context is lost.
  bool Healthy() const override;

 private:
  CudaBackend(std::shared_ptr<const Model> model, const CudaBackendOptions& opts);
  absl::Status Init();
  absl::Status ReserveWorkspace();
  int DecodeSplits(int nitems, int max_len) const;
  // Decode steps replayed from graphs are padded to DecodeBucket(n) items (n itself up to
  // 16, then steps of an eighth of the power of two below n; never past the reserved
  // workspace) with items of pad_, so that a few graphs serve every batch size.
  int DecodeBucket(int n) const;
  void PadDecodeStep(StepPlan* plan);
  absl::Status CreatePad();
  // Step and StepSampled (sampled == nullptr for Step): the phases of step_plan.h in order.
  // wait = false: the step stays in flight (in_flight_) until EndStep.
  absl::Status RunStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                       std::vector<SampledToken>* sampled, bool wait = true);
  absl::Status RunOneStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                          std::vector<SampledToken>* sampled, bool wait = true);
  // The end of a step: the stream synchronised, the sampled tokens out of the pinned
  // block. Touches no session (one may be freed while the step is in flight).
  absl::Status FinishStep(const StepMetaLayout& layout, int n_samp, std::vector<SampledToken>* sampled);
  struct InFlight {
    bool active = false;
    StepMetaLayout layout;
    int n_samp = 0;
    std::vector<SampledToken>* sampled = nullptr;
  };
  // Host logits staged in logits_host_ by CommitStep: FinishStep copies them into `dst`
  // once the stream is done (0 floats: none staged, the copy went to `dst` directly).
  struct StagedLogits {
    std::vector<float>* dst = nullptr;
    size_t floats = 0;
  };
  StagedLogits staged_logits_;
  // Bytes up to which host logits go through logits_host_ (CudaBackendOptions::pinned_logits_bytes).
  size_t PinnedLogitsLimit() const;
  InFlight in_flight_;
  // A step of decode and prefill items as two RunOneStep calls (opts_.split_mixed_steps).
  absl::Status RunSplitStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                            std::vector<SampledToken>* sampled);

  // State block layout (floats): wkv [R][H][64][64] (transposed per head), att_prev [R][C],
  // ffn_prev [R][C], attention ffn_prev [M][C].
  size_t StateFloats() const;
  size_t WkvOff(int i) const { return static_cast<size_t>(i) * H_ * 4096; }
  size_t AttPrevOff(int i) const { return static_cast<size_t>(R_) * H_ * 4096 + static_cast<size_t>(i) * C_; }
  size_t FfnPrevOff(int i) const { return AttPrevOff(R_) + static_cast<size_t>(i) * C_; }
  size_t AttnFfnPrevOff(int j) const { return AttPrevOff(R_) + static_cast<size_t>(R_ + j) * C_; }
  size_t SessionBytesOf(const CudaSession& s) const;

  // --- Paged KV caches (kv_pages.cc). A page: kernels::kKvPageRows rows of K and V, or as
  // many chunk-sum rows (the same bytes).
  size_t PageBytes() const;
  int KvPagesFor(long long rows) const;   // KV pages that hold `rows` rows
  int SumPagesFor(long long rows) const;  // chunk-sum pages for the chunks of `rows` rows
  size_t CacheBytesFor(long long rows) const;
  // Pages a step of T more rows adds to `kv`: new pages and copies of the shared pages it
  // writes into.
  int StepPages(const KvCache& kv, int T) const;
  absl::Status GrowTable(PageTable* t, int pages);  // appends fresh pages up to `pages`
  // Copy-on-write: every page of [first, last] that another table shares is replaced by a
  // private copy (stream-ordered device copy).
  absl::Status MakePrivate(PageTable* t, long long first, long long last);
  // Makes rows [ct, ct + T) of `kv` writable: private pages where they are written, new
  // pages past the end. A failure leaves a consistent cache (maybe with extra pages).
  absl::Status ReserveRows(KvCache* kv, int T);
  void ReleaseTable(PageTable* t);  // drops the page references, frees the device table
  void ReleaseCache(KvCache* kv);   // both tables; leaves kv empty
  // Device copies of page tables: entries past `synced` go up, through `updates` (written
  // by a kernel when the step's metadata is up) or, when null, by a copy now.
  struct PageUpdates {
    std::vector<void**> dst;
    std::vector<void*> val;
  };
  absl::Status SyncTable(PageTable* t, PageUpdates* updates);
  absl::Status SyncCache(KvCache* kv, PageUpdates* updates);
  kernels::KvView KvViewOf(const KvCache& kv) const;
  kernels::SumView SumViewOf(const KvCache& kv) const;

  // --- The step's phases (see step_plan.h); each works on step_.
  // Validates the items, lays out rows and logit rows, plans every sparse layer's KV cache
  // and checks the memory budget. Changes nothing but the plan.
  absl::Status PlanStep(const std::vector<StepInput>& items, bool device_sampling, StepPlan* plan);
  // Grows the planned caches, allocates the compaction targets (given back on failure),
  // points the plan's AttnItems at the buffers and sizes the workspace.
  absl::Status ReserveStep(StepPlan* plan);
  void DropCompactionTargets(StepPlan* plan);
  // After a step failed past ReserveStep: its sessions' device tables are sent whole again.
  void ForgetDeviceTables(StepPlan* plan);
  // Fills the pinned metadata block and uploads it; sets meta_ to the device views.
  absl::Status UploadStep(const std::vector<StepInput>& items, const StepPlan& plan, const StepMetaLayout& layout);
  // The forward (Forward below): replayed from a CUDA graph for pure decode steps.
  absl::Status ForwardOrReplay(const StepPlan& plan);
  // Logits to the host, device sampling, then the KV caches' new lengths and the
  // sessions' token counts once the stream is done. The compaction targets pass from the
  // plan to the sessions.
  absl::Status CommitStep(StepPlan* plan, const StepMetaLayout& layout, std::vector<float>* logits,
                          std::vector<SampledToken>* sampled);  // queues; FinishStep waits

  // --- Forward pieces (model_forward.cc, gemm.cc, step_workspace.cc).
  absl::Status EnsureWorkspace(int rows, int items, int logit_rows, size_t decode_part_floats);
  // y [rows, out] (+)= x [rows, in] · wᵀ (w a torch Linear weight [out, in], fp32
  // accumulation): a weight-bound GEMV for at most kGemvMaxRows rows, else cuBLAS.
  absl::Status Gemm(float* y, const void* x, const void* w, int rows, int out, int in, bool accumulate);
  // Same product, output rounded to the weights' half type (fp32 accumulation).
  absl::Status GemmHalfOut(void* y, const void* x, const void* w, int rows, int out, int in);
  // Independent products of one step over the same rows: one grouped GEMV launch per
  // kGemvMaxJobs for decode steps of at most kGemvMaxRows rows, with skinny_mma one grouped
  // tensor-core launch up to 16 rows (32 for 8-bit weights), else cuBLAS per job (with
  // `tmp`, a float buffer [rows, out], and an activation launch when act is set).
  struct GemmJob {
    float* y;          // float32 output, or null
    void* y_half;      // half output when y is null
    float* tmp;        // cuBLAS path with an activation: float32 scratch
    const void* x;
    const void* w;
    int out, in;
    bool accumulate = false;
    kernels::Act act = kernels::Act::kNone;
    int mix = -1;  // x is token-shift mix plane `mix` of ws_.mixh (-1: the normed row or other)
    kernels::GemvParams Gemv(bool bf16, int rows) const;  // the GEMV kernel's view
  };
  static constexpr int kMaxGemmJobs = 8;  // the most jobs a GemmJobs call passes (the r/k/v + LoRA downs: 7)
  absl::Status GemmJobs(const GemmJob* jobs, int n, int rows);
  absl::Status GemmOne(const GemmJob& job, int rows);  // one job, no activation
  // opts_.batch_invariant: every job in the kernel its shape alone picks (gemm.cc).
  absl::Status InvariantJobs(const GemmJob* jobs, int n, int rows);
  static constexpr int kInvariantTileRows = 64;  // from here half-weight jobs take the tiled kernel
  // opts_.fold_layernorm (decode steps of <= kGemvMaxRows sessions, fold_step_): NormShift
  // and the attention block's first LayerNorm leave their LayerNorm to the next GEMV group
  // (fold_next_); a fold with a token-shift state leaves the state copy to the group after
  // it (save_next_). LaunchGemvs attaches them; any other product path with one pending is
  // an error (their inputs were never written).
  absl::Status LaunchGemvs(kernels::GemvGroupParams g);
  void EndFold() {  // the folded group has launched: its state copy goes to the next one
    fold_next_ = {};
    save_next_ = save_after_fold_;
    save_after_fold_ = {};
  }
  bool fold_step_ = false;
  // The model's widths let every decode product take the GEMV with a folded input (in % 16
  // for 8-bit weights, C within the fold's shared-memory rows).
  bool FoldShapes() const {
    const ModelShape& s = model_->shape;
    for (int d : {C_, F_, s.rank_w, s.rank_a, s.rank_v, s.rank_g})
      if (d % 16 != 0) return false;
    return C_ <= kernels::kGemvFoldMaxC;
  }
  // Wide rows are normalized by every block of the folded group: four outputs a warp there
  // (a quarter of the blocks), one for narrow ones (more blocks for one session's latency).
  int FoldOutsPerWarp() const { return C_ >= 2048 ? 4 : 1; }
  // The decode kernels read before their PDL wait (CudaBackendOptions::early_reads): in
  // PDL steps only (elsewhere the wait does nothing and the plain order is kept).
  bool EarlyReads() const;  // (model_forward.cc)
  kernels::GemvFold fold_next_{};
  kernels::GemvSave save_after_fold_{}, save_next_{};
  // GemmJobs' cuBLAS path for jobs whose weights are half (8-bit ones dequantized first).
  absl::Status GemmHalfJobs(const GemmJob* jobs, int n, int rows);
  kernels::GemvParams GemvOf(const GemmJob& q, int rows) const;  // with the 8-bit scales
  int GemvSplit(int in, bool w8) const;  // CudaBackendOptions::gemv_split for a product
  bool GemvFits(const GemmJob& q, int rows) const;             // the GEMV kernel takes it
  bool SkinnyFits(const GemmJob& q, int rows) const;           // the skinny MMA kernel takes it
  static constexpr int kSkinnyMaxRowsHalf = 16;                // half weights: measured crossover
  // 8-bit matrix w [out, in] (DeviceModel::ScaleOf) into dev_->deq as half.
  absl::Status Dequant(const void* w, int out, int in);
  static constexpr int kMaxDeqRun = 3;  // the r/k/v (q/k/v) triple
  static int BatchRun(const GemmJob* jobs, int n);     // jobs from jobs[0] GemmStrided can take
  absl::Status GemmStrided(const GemmJob* jobs, int count, int rows);
  // LayerNorm of ws_.x then the token-shift mixes into ws_.mixh (fused for decode steps).
  absl::Status NormShift(const float* ln_w, const float* ln_b, const float* mix, int n_mix, size_t prev_off,
                         int rows, int items);
  absl::Status RwkvBlock(int i, int rows, int items);
  absl::Status TimeMixKernels(const kernels::Rwkv7PrepParams& pp, const kernels::Wkv7Params& wp,
                              const kernels::Rwkv7PostParams& po, int items);
  absl::Status AttnBlock(int j, int rows, int items);
  // Embedding, blocks in model order and the head, for the planned step (no host copies):
  // the part that a decode step replays from a CUDA graph.
  absl::Status Forward(int rows, int items, int logit_rows);
  void DropGraphs() { graphs_.Clear(); }
  int GraphCount() const { return graphs_.size(); }
  // opts_.pdl on a GPU that has it (sm_90+); used for steps of <= kPdlMaxItems sessions.
  bool pdl_ok_ = false;
  static constexpr int kPdlMaxItems = 4;
  absl::Status ChannelMix(const float* ln_w, const float* ln_b, const float* x_k, const void* key,
                          const void* value, size_t prev_off, int rows, int items);

  std::shared_ptr<const Model> model_;
  CudaBackendOptions opts_;
  std::unique_ptr<DeviceModel> dev_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int C_ = 0, H_ = 0, R_ = 0, M_ = 0, F_ = 0, V_ = 0, maxrank_ = 0;  // sizes: see the top
  int sm_count_ = 0;  // the device's multiprocessors (read once by Init)
  // Session memory is admitted against budget_bytes_ (the card's fraction less what weights
  // and the CUDA context took at start), together with the step workspace it needs.
  size_t budget_bytes_ = 0;
  std::unique_ptr<KvPagePool> pool_;  // every KV page of every session
  size_t UsedBytes() const;  // all sessions: state blocks + KV pages in use
  size_t WsBytes(int rows, int items, int logit_rows, size_t part_floats) const;
  size_t WsBytesNow() const { return ws_.allocs.empty() ? 0 : WsBytes(ws_.rows, ws_.items, ws_.logit_rows, ws_.part_floats); }
  // Whether `extra` more session bytes fit beside workspace `ws` (default: today's), under
  // both the card's budget and opts_.memory_budget_bytes (sessions only) when that is set.
  bool SessionsFit(size_t extra, size_t ws) const;
  bool SessionsFit(size_t extra) const { return SessionsFit(extra, WsBytesNow()); }

  std::map<SessionId, CudaSession> sessions_;
  // The pad session of padded decode steps: a state block and one page per table per
  // sparse layer, outside the sessions' accounting (taken off the budget at start).
  CudaSession pad_;
  // State blocks of freed sessions, reused by CreateSession (at most free_states_cap_).
  std::vector<float*> free_states_;
  size_t free_states_cap_ = 0;
  size_t pad_bytes_ = 0;
  SessionId next_id_ = 1;

  // This step's plan (reused across steps) and the device views of its metadata block.
  StepPlan step_;
  StepMetaViews meta_;
  char* meta_dev_ = nullptr;
  char* meta_host_ = nullptr;  // pinned
  size_t meta_cap_ = 0;
  // Pinned staging of the host logits rows (grown on demand up to PinnedLogitsLimit();
  // host memory, outside the device budget).
  float* logits_host_ = nullptr;
  size_t logits_host_cap_ = 0;  // floats
  // The device sampler's scratch (kernels::SampleScratchBytes; grown on demand, at most
  // ~20 KB per sampled row at small batch, ~600 bytes at large; outside the memory budget).
  void* samp_scratch_ = nullptr;
  size_t samp_scratch_cap_ = 0;

  // CUDA graphs of pure decode steps (opts_.cuda_graphs).
  DecodeGraphs graphs_;
  // Chunked wkv7 (kernels/wkv7_chunked.cuh) for steps with an item of at least
  // WkvChunkedMinLen() rows and few (item, head) pairs; opts_.wkv_chunked = false (or the
  // batch-invariant mode) turns it off.
  int WkvChunkedMinLen() const {
    return opts_.wkv_chunked && !opts_.batch_invariant ? std::max(1, opts_.wkv_chunked_min_len)
                                                       : std::numeric_limits<int>::max();
  }
  static constexpr size_t kWkvScratchBytes = size_t{64} << 20;
  bool graph_mode_ = false;   // set while capturing: chunk selection uses the fixed cap
  int graph_chunk_cap_ = 0;
  bool graph_sparse_ = false;
  void* cublas_ws_ = nullptr;

  // Workspace (grown on demand).
  struct Ws {
    int rows = 0, items = 0, logit_rows = 0;
    size_t part_floats = 0;
    float *x, *u, *r, *k, *v, *w, *a, *kk, *y, *g, *vfirst, *vg, *lora, *ffn, *logits, *part;
    void *mixh, *yh, *lorah, *ffnh, *headh;
    int* selected;
    unsigned* tickets;  // [items, H], zero: attn_decode's merge counters (AttnDecodeParams)
    float* wkv;  // chunked-recurrence scratch (kWkvScratchBytes) once rows >= WkvChunkedMinLen()
    std::vector<void*> allocs;
  } ws_{};
};

}  // namespace rwkvx::cuda
