// CudaBackend: construction, sessions, snapshots and memory accounting. The step itself
// is in cuda_step.cc and the files it names.
#include "engine/cuda/cuda_backend.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>

#include "engine/cuda/cuda_check.h"
#include "kernels/attn_decode.cuh"
#include "kernels/fp8.cuh"
#include "kernels/kv_append.cuh"
#include "kernels/launch.cuh"

namespace rwkvx {

std::string CudaUnavailableReason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error where it is one
    return absl::StrCat("no usable CUDA GPU: cudaGetDeviceCount failed (", cudaGetErrorName(e), ": ",
                        cudaGetErrorString(e), "); is an NVIDIA driver installed?");
  }
  if (n == 0) return "no CUDA device is visible (cudaGetDeviceCount returned 0)";
  return "";
}

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(std::shared_ptr<const Model> model,
                                                         const CudaBackendOptions& opts) {
  if (const std::string why = CudaUnavailableReason(); !why.empty()) return absl::UnavailableError(why);
  return cuda::CudaBackend::Create(std::move(model), opts);
}

namespace cuda {

CudaBackend::CudaBackend(std::shared_ptr<const Model> model, const CudaBackendOptions& opts)
    : model_(std::move(model)), opts_(opts) {
  const ModelShape& s = model_->shape;
  C_ = s.n_embd;
  H_ = s.n_head;
  R_ = s.n_rwkv_layer;
  M_ = s.n_attn_layer;
  F_ = s.ffn_dim;
  V_ = s.vocab;
  maxrank_ = std::max({s.rank_w, s.rank_a, s.rank_v, s.rank_g, 1});
}

absl::StatusOr<std::unique_ptr<Backend>> CudaBackend::Create(std::shared_ptr<const Model> model,
                                                             const CudaBackendOptions& opts) {
  const ModelShape& s = model->shape;
  if (s.head_size != 64 || s.n_embd != s.n_head * 64)
    return absl::InvalidArgumentError("the CUDA backend needs head size 64 (C = 64 * H)");
  if (model->attn.topk < 1 || model->attn.topk > 16)
    return absl::InvalidArgumentError("the CUDA backend supports top-k 1..16");
  if (model->attn.chunk_size < 1) return absl::InvalidArgumentError("chunk size must be >= 1");
  if (opts.wkv_rows != 1 && opts.wkv_rows != 2 && opts.wkv_rows != 4)
    return absl::InvalidArgumentError("wkv_rows must be 1, 2 or 4");
  if (opts.gemv_prefetch < -1 || opts.gemv_prefetch > 1) return absl::InvalidArgumentError("gemv_prefetch must be -1, 0 or 1");
  if (opts.gemv_split < -1 || opts.gemv_split == 3 || opts.gemv_split > 4)
    return absl::InvalidArgumentError("gemv_split must be -1, 0, 1, 2 or 4");
  if (opts.attn_blocks_per_sm < 1 || opts.attn_blocks_per_sm > 16)
    return absl::InvalidArgumentError("attn_blocks_per_sm must be 1..16");
  if (opts.gpu_memory_fraction <= 0 || opts.gpu_memory_fraction > 1)
    return absl::InvalidArgumentError("gpu_memory_fraction must be in (0, 1]");
  std::unique_ptr<CudaBackend> b(new CudaBackend(std::move(model), opts));
  if (auto st = b->Init(); !st.ok()) return st;
  return std::unique_ptr<Backend>(std::move(b));
}

absl::Status CudaBackend::Init() {
  RWKVX_CUDA_RETURN(cudaSetDevice(opts_.device));
  RWKVX_CUDA_RETURN(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  RWKVX_CUBLAS_RETURN(cublasCreate(&cublas_));
  RWKVX_CUBLAS_RETURN(cublasSetStream(cublas_, stream_));
  // An explicit cuBLAS workspace: GEMMs captured into CUDA graphs must not allocate.
  const size_t ws_bytes = size_t{64} << 20;
  RWKVX_CUDA_RETURN(cudaMalloc(&cublas_ws_, ws_bytes));
  RWKVX_CUBLAS_RETURN(cublasSetWorkspace(cublas_, cublas_ws_, ws_bytes));
  // Kernel sizing (decode splits, the chunked recurrence's choice) aims at the card's SMs.
  RWKVX_CUDA_RETURN(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, opts_.device));
  int cc_major = 0;
  RWKVX_CUDA_RETURN(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, opts_.device));
  pdl_ok_ = opts_.pdl && cc_major >= 9;
  // Keep freed stream-ordered memory in the pool (KV buffers come and go every step).
  cudaMemPool_t pool;
  RWKVX_CUDA_RETURN(cudaDeviceGetDefaultMemPool(&pool, opts_.device));
  uint64_t threshold = UINT64_MAX;
  RWKVX_CUDA_RETURN(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  if (opts_.fp8_weights && opts_.int8_weights)
    return absl::InvalidArgumentError("8-bit weights: fp8 or int8, not both");
  std::optional<kernels::W8> w8;
  if (opts_.fp8_weights) w8 = kernels::W8::kE4M3;
  if (opts_.int8_weights) w8 = kernels::W8::kInt8;
  auto dm = DeviceModel::Upload(*model_, opts_.bf16, w8, stream_);
  if (!dm.ok()) return dm.status();
  dev_ = std::move(*dm);
  size_t free_b = 0, total_b = 0;
  RWKVX_CUDA_RETURN(cudaMemGetInfo(&free_b, &total_b));
  // Budget for sessions: the fraction of the card, less what is already taken (weights,
  // context) and a reserve for step workspaces.
  // Budget for sessions and step workspaces: the fraction of the card, less what is
  // already taken (weights, CUDA context, cuBLAS) and 512 MiB for the memory pool's slack.
  const double budget = opts_.gpu_memory_fraction * static_cast<double>(total_b) -
                        static_cast<double>(total_b - free_b) - 512.0 * (1 << 20);
  budget_bytes_ = budget > 0 ? static_cast<size_t>(budget) : 0;
  pool_ = std::make_unique<KvPagePool>(PageBytes(), size_t{64} << 20);
  {
    // Freed sessions' state blocks are kept for new ones, up to 32 blocks and 256 MiB
    // (opts_.free_state_blocks: that many instead), an eighth of the budget at most; those
    // bytes come off the budget now.
    const size_t blk = StateFloats() * sizeof(float);
    const size_t want = opts_.free_state_blocks >= 0 ? static_cast<size_t>(opts_.free_state_blocks)
                                                     : std::min<size_t>(32, (size_t{256} << 20) / blk);
    free_states_cap_ = std::min<size_t>(want, budget_bytes_ / 8 / blk);
    budget_bytes_ -= free_states_cap_ * blk;
  }
  if (opts_.cuda_graphs && opts_.graph_buckets) RWKVX_RETURN_IF_ERROR(CreatePad());
  return ReserveWorkspace();
}

absl::Status CudaBackend::CreatePad() {
  const size_t bytes = StateFloats() * sizeof(float);
  RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&pad_.state), bytes));
  RWKVX_CUDA_RETURN(cudaMemsetAsync(pad_.state, 0, bytes, stream_));
  pad_.kv.resize(M_);
  for (KvCache& kv : pad_.kv) {
    RWKVX_RETURN_IF_ERROR(ReserveRows(&kv, 1));
    RWKVX_RETURN_IF_ERROR(SyncCache(&kv, nullptr));
  }
  pad_bytes_ = SessionBytesOf(pad_);
  budget_bytes_ = budget_bytes_ > pad_bytes_ ? budget_bytes_ - pad_bytes_ : 0;
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

// The workspace for the largest step the scheduler will plan, taken once: its size is then
// a constant in every admission check and no step drops the captured graphs to grow it.
absl::Status CudaBackend::ReserveWorkspace() {
  if (opts_.reserve_step_rows <= 0) return absl::OkStatus();
  const int items = std::max(1, opts_.reserve_step_items);
  size_t part = 0;  // decode splits shrink as sessions grow: take the largest product
  for (int n = 1; n <= items; ++n)
    part = std::max(part, kernels::AttnDecodeScratchFloats(n, H_, DecodeSplits(n, INT_MAX)));
  const size_t want = WsBytes(opts_.reserve_step_rows, items, items, part);
  if (want > budget_bytes_)
    return absl::ResourceExhaustedError(absl::StrCat(
        "the step workspace for ", opts_.reserve_step_rows, " tokens and ", items, " sessions per step needs ", want,
        " bytes, more than the GPU memory budget of ", budget_bytes_,
        " bytes: lower --max-batch-tokens or --max-sessions, or raise --gpu-memory-fraction"));
  return EnsureWorkspace(opts_.reserve_step_rows, items, items, part);
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [id, s] : sessions_) {
    for (auto& kv : s.kv) ReleaseCache(&kv);
    cudaFree(s.state);
  }
  for (auto& kv : pad_.kv) ReleaseCache(&kv);
  if (pad_.state) cudaFree(pad_.state);
  for (float* f : free_states_) cudaFree(f);
  DropGraphs();
  for (void* p : ws_.allocs) cudaFree(p);
  if (cublas_ws_) cudaFree(cublas_ws_);
  if (meta_dev_) cudaFree(meta_dev_);
  if (meta_host_) cudaFreeHost(meta_host_);
  if (logits_host_) cudaFreeHost(logits_host_);
  if (samp_scratch_) cudaFree(samp_scratch_);
  if (stream_) cudaStreamSynchronize(stream_);
  pool_.reset();
  dev_.reset();
  if (cublas_) cublasDestroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

size_t CudaBackend::StateFloats() const {
  return static_cast<size_t>(R_) * (H_ * 4096 + 2 * C_) + static_cast<size_t>(M_) * C_;
}

absl::StatusOr<SessionId> CudaBackend::CreateSession() {
  const size_t bytes = StateFloats() * sizeof(float);
  if (!SessionsFit(bytes)) return absl::ResourceExhaustedError("GPU memory budget for sessions is exhausted");
  CudaSession s;
  if (!free_states_.empty()) {
    // A block a freed session left: zeroed in stream order, after whatever still used it.
    s.state = free_states_.back();
    free_states_.pop_back();
    RWKVX_CUDA_RETURN(cudaMemsetAsync(s.state, 0, bytes, stream_));
  } else {
    RWKVX_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&s.state), bytes));
    RWKVX_CUDA_RETURN(cudaMemsetAsync(s.state, 0, bytes, stream_));
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  }
  s.kv.resize(M_);
  const SessionId id = next_id_++;
  sessions_.emplace(id, std::move(s));
  return id;
}

absl::Status CudaBackend::FreeSession(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
  for (auto& kv : it->second.kv) ReleaseCache(&kv);
  if (free_states_.size() < free_states_cap_) {
    // Kept for the next session (no cudaFree, no synchronisation; its bytes came off the
    // budget at start). Work still queued on the stream may read it: the next user's
    // memset is queued after that work.
    free_states_.push_back(it->second.state);
  } else {
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
    RWKVX_CUDA_RETURN(cudaFree(it->second.state));
  }
  sessions_.erase(it);
  // Slabs nobody uses go back to the driver (one is kept against churn).
  return pool_->ReleaseEmptySlabs(1);
}

absl::StatusOr<SessionState> CudaBackend::ExportSession(SessionId id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", id));
  const CudaSession& s = it->second;
  std::vector<float> blk(StateFloats());
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(blk.data(), s.state, blk.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  SessionState out;
  out.tokens_seen = s.tokens_seen;
  out.rwkv.resize(R_);
  out.attn.resize(M_);
  std::vector<std::vector<__half>> hk(M_), hv(M_);
  const size_t page_halves = static_cast<size_t>(kernels::kKvPageRows) * C_;
  for (int j = 0; j < M_; ++j) {
    const KvCache& kv = s.kv[j];
    hk[j].resize(static_cast<size_t>(kv.ct) * C_);
    hv[j].resize(static_cast<size_t>(kv.ct) * C_);
    for (int pg = 0; pg * kernels::kKvPageRows < kv.ct; ++pg) {
      const size_t off = pg * page_halves, n = std::min(page_halves, hk[j].size() - off);
      const __half* page = static_cast<const __half*>(pool_->Ptr(kv.kv.pages[pg]));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(hk[j].data() + off, page, n * 2, cudaMemcpyDeviceToHost, stream_));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(hv[j].data() + off, page + page_halves, n * 2, cudaMemcpyDeviceToHost, stream_));
    }
  }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  for (int i = 0; i < R_; ++i) {
    RwkvLayerState& l = out.rwkv[i];
    l.att_prev.assign(blk.begin() + AttPrevOff(i), blk.begin() + AttPrevOff(i) + C_);
    l.ffn_prev.assign(blk.begin() + FfnPrevOff(i), blk.begin() + FfnPrevOff(i) + C_);
    l.wkv.resize(static_cast<size_t>(H_) * 4096);
    const float* w = blk.data() + WkvOff(i);
    for (int h = 0; h < H_; ++h)
      for (int a = 0; a < 64; ++a)
        for (int b = 0; b < 64; ++b) l.wkv[h * 4096 + a * 64 + b] = w[h * 4096 + b * 64 + a];
  }
  for (int j = 0; j < M_; ++j) {
    AttnLayerState& a = out.attn[j];
    a.ct = s.kv[j].ct;
    a.ffn_prev.assign(blk.begin() + AttnFfnPrevOff(j), blk.begin() + AttnFfnPrevOff(j) + C_);
    a.k.resize(hk[j].size());
    a.v.resize(hv[j].size());
    for (size_t e = 0; e < hk[j].size(); ++e) {
      a.k[e] = __half2float(hk[j][e]);
      a.v[e] = __half2float(hv[j][e]);
    }
  }
  return out;
}

absl::StatusOr<SessionId> CudaBackend::ImportSession(const SessionState& st) {
  if (static_cast<int>(st.rwkv.size()) != R_ || static_cast<int>(st.attn.size()) != M_)
    return absl::InvalidArgumentError("session state does not match the model's layer counts");
  for (const auto& l : st.rwkv)
    if (l.att_prev.size() != static_cast<size_t>(C_) || l.ffn_prev.size() != static_cast<size_t>(C_) ||
        l.wkv.size() != static_cast<size_t>(H_) * 4096)
      return absl::InvalidArgumentError("session state: RWKV layer of the wrong size");
  size_t extra = 0;
  for (const auto& a : st.attn) {
    if (a.ffn_prev.size() != static_cast<size_t>(C_) || a.ct < 0 ||
        a.k.size() != static_cast<size_t>(a.ct) * C_ || a.v.size() != a.k.size())
      return absl::InvalidArgumentError("session state: attention layer of the wrong size");
    extra += CacheBytesFor(a.ct);
  }
  if (!SessionsFit(StateFloats() * sizeof(float) + extra))
    return absl::ResourceExhaustedError("GPU memory budget for sessions is exhausted");
  auto id = CreateSession();
  if (!id.ok()) return id.status();
  CudaSession& s = sessions_[*id];
  s.tokens_seen = st.tokens_seen;
  std::vector<float> blk(StateFloats());
  for (int i = 0; i < R_; ++i) {
    const RwkvLayerState& l = st.rwkv[i];
    std::copy(l.att_prev.begin(), l.att_prev.end(), blk.begin() + AttPrevOff(i));
    std::copy(l.ffn_prev.begin(), l.ffn_prev.end(), blk.begin() + FfnPrevOff(i));
    float* w = blk.data() + WkvOff(i);
    for (int h = 0; h < H_; ++h)
      for (int a = 0; a < 64; ++a)
        for (int b = 0; b < 64; ++b) w[h * 4096 + b * 64 + a] = l.wkv[h * 4096 + a * 64 + b];
  }
  for (int j = 0; j < M_; ++j) {
    const AttnLayerState& a = st.attn[j];
    std::copy(a.ffn_prev.begin(), a.ffn_prev.end(), blk.begin() + AttnFfnPrevOff(j));
  }
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(s.state, blk.data(), blk.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
  const size_t page_halves = static_cast<size_t>(kernels::kKvPageRows) * C_;
  for (int j = 0; j < M_; ++j) {
    const AttnLayerState& a = st.attn[j];
    if (a.ct == 0) continue;
    KvCache& kv = s.kv[j];
    absl::Status rs = ReserveRows(&kv, a.ct);
    if (rs.ok()) rs = SyncCache(&kv, nullptr);
    if (!rs.ok()) {
      (void)FreeSession(*id);
      return rs;
    }
    std::vector<__half> hk(a.k.size()), hv(a.v.size());
    for (size_t e = 0; e < hk.size(); ++e) {
      hk[e] = __float2half_rn(a.k[e]);
      hv[e] = __float2half_rn(a.v[e]);
    }
    for (int pg = 0; pg < kv.kv.size(); ++pg) {
      const size_t off = pg * page_halves, n = std::min(page_halves, hk.size() - off);
      __half* page = static_cast<__half*>(pool_->Ptr(kv.kv.pages[pg]));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(page, hk.data() + off, n * 2, cudaMemcpyHostToDevice, stream_));
      RWKVX_CUDA_RETURN(cudaMemcpyAsync(page + page_halves, hv.data() + off, n * 2, cudaMemcpyHostToDevice, stream_));
    }
    kv.ct = a.ct;
    kernels::ChunkSumsParams cs;
    cs.kv = KvViewOf(kv);
    cs.sums = SumViewOf(kv);
    cs.ct = kv.ct;
    cs.C = C_;
    cs.chunk = model_->attn.chunk_size;
    RWKVX_CUDA_RETURN(kernels::LaunchChunkSums(cs, stream_));
    RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));  // host vectors die at scope end
  }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  return *id;
}

absl::StatusOr<SessionId> CudaBackend::ForkSession(SessionId src_id) {
  if (sessions_.find(src_id) == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session ", src_id));
  // Only the state block is new: the KV pages are shared until one side writes.
  auto id = CreateSession();
  if (!id.ok()) return id.status();
  const CudaSession& src = sessions_.at(src_id);  // std::map: references survive inserts
  CudaSession& dst = sessions_.at(*id);
  dst.tokens_seen = src.tokens_seen;
  RWKVX_CUDA_RETURN(cudaMemcpyAsync(dst.state, src.state, StateFloats() * sizeof(float), cudaMemcpyDeviceToDevice,
                                    stream_));
  for (int j = 0; j < M_; ++j) {
    KvCache& to = dst.kv[j];
    to.kv.pages = src.kv[j].kv.pages;
    to.sums.pages = src.kv[j].sums.pages;
    to.ct = src.kv[j].ct;
    for (int32_t p : to.kv.pages) pool_->Ref(p);
    for (int32_t p : to.sums.pages) pool_->Ref(p);
    if (absl::Status st = SyncCache(&to, nullptr); !st.ok()) {
      (void)FreeSession(*id);
      return st;
    }
  }
  RWKVX_CUDA_RETURN(cudaStreamSynchronize(stream_));
  return *id;
}

bool CudaBackend::Healthy() const {
  if (!stream_) return true;
  const cudaError_t e = cudaStreamQuery(stream_);
  return e == cudaSuccess || e == cudaErrorNotReady;
}

}  // namespace cuda
}  // namespace rwkvx
