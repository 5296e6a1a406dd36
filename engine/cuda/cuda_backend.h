// CudaBackend: engine::Backend on one NVIDIA GPU. Weights in fp16/bf16, RWKV state in
// float32 (one device block per session: the "slot"), sparse-attention KV caches in fp16
// (one growable buffer per session and sparse layer, with running per-chunk key sums).
// A step runs every item's tokens through each projection as one cuBLAS GEMM; the rest is
// kernels/. Same semantics as the CPU reference (engine/cpu); docs/CUDA.md.
//
// Threading: not thread-safe (Backend contract): one caller thread. All GPU work is issued
// on the backend's own stream; Step returns after the logits are on the host.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/device_model.h"
#include "kernels/activation.cuh"
#include "kernels/attn_item.cuh"

namespace rwkvx::cuda {

// One sparse layer's KV cache of one session.
struct KvCache {
  __half* k = nullptr;   // [cap, C]
  __half* v = nullptr;   // [cap, C]
  float* sums = nullptr; // [cap / chunk + 2, C]
  int cap = 0, ct = 0;
  size_t Bytes(int C, int chunk) const;
};

struct CudaSession {
  float* state = nullptr;   // StateFloats() floats (see state offsets below)
  std::vector<KvCache> kv;  // [M]
  long long tokens_seen = 0;
};

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
  // A device-to-device copy of the state and KV buffers (no host round trip, no
  // rounding: the copy continues bit for bit like the original). Pages are not shared yet.
  absl::StatusOr<SessionId> ForkSession(SessionId id) override;
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    return RunStep(items, logits, nullptr);
  }
  // Sampling on the GPU (kernels/sample.cuh): the head's rows for sampled items never
  // leave the device; one launch after the forward, (token, logprob) pairs come back.
  bool SupportsDeviceSampling() const override { return true; }
  absl::Status StepSampled(const std::vector<StepInput>& items, std::vector<float>* logits,
                           std::vector<SampledToken>* sampled) override {
    return RunStep(items, logits, sampled);
  }
  size_t SessionBytes(SessionId id) const override;
  size_t SessionKvTokens(SessionId id) const override;
  MemoryInfo Memory() const override;
  size_t MaxSessionBytes() const override;

 private:
  CudaBackend(std::shared_ptr<const Model> model, const CudaBackendOptions& opts);
  absl::Status Init();
  absl::Status RunStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                       std::vector<SampledToken>* sampled);

  // State block layout (floats): wkv [R][H][64][64] (transposed per head), att_prev [R][C],
  // ffn_prev [R][C], attention ffn_prev [M][C].
  size_t StateFloats() const;
  size_t WkvOff(int i) const { return static_cast<size_t>(i) * H_ * 4096; }
  size_t AttPrevOff(int i) const { return static_cast<size_t>(R_) * H_ * 4096 + static_cast<size_t>(i) * C_; }
  size_t FfnPrevOff(int i) const { return AttPrevOff(R_) + static_cast<size_t>(i) * C_; }
  size_t AttnFfnPrevOff(int j) const { return AttPrevOff(R_) + static_cast<size_t>(R_ + j) * C_; }
  size_t SessionBytesOf(const CudaSession& s) const;

  // KV buffers: allocate `cap` rows, copying the first `keep_rows` rows of `old` when given.
  absl::Status AllocKv(KvCache* kv, int cap);
  void FreeKv(KvCache* kv);
  int RoundCap(int rows) const;

  // Forward pieces (cuda_step.cc).
  absl::Status EnsureWorkspace(int rows, int items, int logit_rows, size_t decode_part_floats);
  absl::Status Gemm(float* y, const void* x, const void* w, int rows, int out, int in, bool accumulate);
  // Same product, output rounded to the weights' half type (fp32 accumulation).
  absl::Status GemmHalfOut(void* y, const void* x, const void* w, int rows, int out, int in);
  // Independent products of one step over the same rows: one grouped GEMV launch per
  // kGemvMaxJobs for decode steps of at most kGemvMaxRows rows, else cuBLAS per job (with
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
  };
  absl::Status GemmJobs(const GemmJob* jobs, int n, int rows);
  // LayerNorm of ws_.x then the token-shift mixes into ws_.mixh (fused for decode steps).
  absl::Status NormShift(const float* ln_w, const float* ln_b, const float* mix, int n_mix, size_t prev_off,
                         int rows, int items);
  absl::Status RwkvBlock(int i, int rows, int items);
  absl::Status AttnBlock(int j, int rows, int items);
  // Embedding, blocks in model order and the head, for the planned step (no host copies):
  // the part that a decode step replays from a CUDA graph.
  absl::Status Forward(int rows, int items, int logit_rows);
  void DropGraphs();
  absl::Status ChannelMix(const float* ln_w, const float* ln_b, const float* x_k, const void* key,
                          const void* value, size_t prev_off, int rows, int items);

  std::shared_ptr<const Model> model_;
  CudaBackendOptions opts_;
  std::unique_ptr<DeviceModel> dev_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int C_ = 0, H_ = 0, R_ = 0, M_ = 0, F_ = 0, V_ = 0, maxrank_ = 0;
  // Session memory is admitted against budget_bytes_ (the card's fraction less what weights
  // and the CUDA context took at start), together with the step workspace it needs.
  size_t budget_bytes_ = 0;
  size_t UsedBytes() const;  // all sessions (state + KV)
  size_t WsBytes(int rows, int items, int logit_rows, size_t part_floats) const;
  size_t WsBytesNow() const { return ws_.allocs.empty() ? 0 : WsBytes(ws_.rows, ws_.items, ws_.logit_rows, ws_.part_floats); }

  std::map<SessionId, CudaSession> sessions_;
  SessionId next_id_ = 1;

  // Per-step plan (host) and its device copy.
  struct AttnPlan {
    bool compress = false;
    int keep = 0, npast = 0;
    KvCache fresh;  // compaction target when compress
  };
  std::vector<std::vector<AttnPlan>> plan_;              // [M][items]
  std::vector<std::vector<kernels::AttnItem>> attn_items_;  // [M][items]
  std::vector<int> item_row0_, item_len_;
  std::vector<CudaSession*> item_sess_;
  int max_len_ = 0, decode_splits_ = 1, max_chunks_ = 0;
  bool any_decode_ = false, any_prefill_ = false, any_sparse_ = false;

  // Device metadata for the step (one upload).
  char* meta_dev_ = nullptr;
  char* meta_host_ = nullptr;  // pinned
  size_t meta_cap_ = 0;
  int* d_tokens_ = nullptr;
  int* d_row_item_ = nullptr;
  int* d_item_row0_ = nullptr;
  int* d_item_len_ = nullptr;
  float** d_item_state_ = nullptr;
  int* d_logit_rows_ = nullptr;
  kernels::AttnItem* d_attn_items_ = nullptr;  // [M][items]

  // CUDA graphs of pure decode steps, by (items, logit rows, splits, chunk cap, sparse).
  struct GraphKey {
    int items, logit_rows, splits, chunk_cap, sparse;
    bool operator<(const GraphKey& o) const {
      return std::tie(items, logit_rows, splits, chunk_cap, sparse) <
             std::tie(o.items, o.logit_rows, o.splits, o.chunk_cap, o.sparse);
    }
  };
  std::map<GraphKey, cudaGraphExec_t> graphs_;
  bool use_graphs_ = true;
  // Chunked wkv7 (kernels/wkv7_chunked.cuh) for steps with an item of at least
  // kWkvChunkedMinLen rows and few (item, head) pairs; RWKVX_WKV_CHUNKED=0 turns it off.
  static constexpr int kWkvChunkedMinLen = 128;
  static constexpr size_t kWkvScratchBytes = size_t{64} << 20;
  bool use_wkv_chunked_ = true;
  bool wkv_chunked_ = false;  // this step
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
    float* wkv;  // chunked-recurrence scratch (kWkvScratchBytes) once rows >= kWkvChunkedMinLen
    std::vector<void*> allocs;
  } ws_{};
};

}  // namespace rwkvx::cuda
