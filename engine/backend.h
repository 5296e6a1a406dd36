// engine::Backend: the one interface the scheduler drives; implemented by the CPU
// reference (engine/cpu) and CUDA (engine/cuda).
//
// Threading: a Backend is NOT thread-safe. Exactly one thread (the scheduler loop, or a
// tool's main thread) calls it. Sessions are owned by the backend and named by ids.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model.h"
#include "engine/session_state.h"

namespace rwkvx {

using SessionId = uint64_t;

// Sampling inside the backend (Backend::SupportsDeviceSampling): the backend draws the
// token itself, with engine/sampling/sampler.h's semantics, and returns only its id. Built by
// Sampler::DeviceSpec, which applies the request's penalties and generator; the caller
// then records the token with Sampler::Accept as usual.
struct DeviceSampling {
  float temperature = 1.0f;  // <= 0: greedy
  float top_p = 1.0f;
  int top_k = 0;
  double uniform = 0.0;  // the draw, in [0, 1), from the request's generator
  // (token, value) to apply to the logits first: value +inf bans the token (logit -inf),
  // any other value is subtracted (penalties). Each token at most once.
  std::vector<std::pair<int32_t, float>> adjust;
  // Allowed tokens (structured output's grammar mask), applied after `adjust`: bit
  // (id % 32) of word id / 32 set = the id may be drawn; ids past allowed.size() * 32 are
  // banned. Empty: no mask.
  std::vector<uint32_t> allowed;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;  // log softmax of the adjusted logits at the token
};

// One session's share of a step.
struct StepInput {
  SessionId session = 0;
  // T >= 1 tokens. T == 1 runs the decode path, T > 1 the prefill path (the same split
  // as the official package's forward(list)).
  std::vector<int32_t> tokens;
  bool want_logits = true;  // logits of the last position
  // With want_logits: sample in the backend instead of returning the logits row (only
  // where SupportsDeviceSampling()). Not owned; must outlive the Step call.
  const DeviceSampling* sample = nullptr;
};

struct MemoryInfo {
  // All sessions' state and KV bytes as the backend holds them: storage shared between
  // sessions (the CPU backend's copy-on-write KV pages after ForkSession) counts once.
  size_t used_bytes = 0;
  size_t capacity_bytes = 0;   // budget (0 = unbounded)
  size_t weights_bytes = 0;
};

// For the metrics only (Backend::Usage; not on the step path): device memory the backend
// allocated itself besides the weights (session state blocks, KV page slabs with pages in
// use or free, the step workspace, scratch, what the stream-ordered pool keeps), and the
// CUDA graphs it holds. Zero on the CPU.
struct DeviceUsage {
  size_t device_bytes = 0;
  int graphs = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string Name() const = 0;  // "cpu" or "cuda"
  virtual const Model& model() const = 0;

  virtual absl::StatusOr<SessionId> CreateSession() = 0;
  virtual absl::Status FreeSession(SessionId id) = 0;
  // Snapshot / restore through the host format.
  virtual absl::StatusOr<SessionState> ExportSession(SessionId id) const = 0;
  virtual absl::StatusOr<SessionId> ImportSession(const SessionState& state) = 0;
  // A new session with the same state as `id` (same next-token logits). Backends may
  // share storage copy-on-write (the CPU backend copies the RWKV state and shares its KV
  // pages, copying a shared page only when one side writes it); the default copies
  // through the host format. ResourceExhausted when the budget cannot hold the fork.
  virtual absl::StatusOr<SessionId> ForkSession(SessionId id) {
    auto st = ExportSession(id);
    if (!st.ok()) return st.status();
    return ImportSession(*st);
  }

  // Runs every item (each session at most once per step). `logits` receives one row of V
  // floats per item with want_logits, in item order. On error no session has advanced
  // past a consistent state for the failing item; the caller should free it.
  virtual absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) = 0;

  // Whether Step can sample in the backend (StepInput::sample), so that only token ids
  // leave it. The CPU reference returns logits only.
  virtual bool SupportsDeviceSampling() const { return false; }
  // Whether a session's state and logits are the same bits however its tokens are cut
  // into calls (below the model's own limit: server/prefix_cache SplitInvariantTokens) and
  // whatever else shares its steps. The CPU backend is; the CUDA backend in its
  // batch-invariant mode (CudaBackendOptions::batch_invariant).
  virtual bool SplitInvariant() const { return false; }
  // Step with device sampling: `logits` gets the rows of the items with want_logits and
  // no `sample`, in item order; `sampled` one entry per item with a `sample`, in item
  // order. Without SupportsDeviceSampling, items must not carry `sample`.
  virtual absl::Status StepSampled(const std::vector<StepInput>& items, std::vector<float>* logits,
                                   std::vector<SampledToken>* sampled) {
    sampled->clear();
    for (const StepInput& in : items)
      if (in.sample) return absl::UnimplementedError(Name() + " backend cannot sample on the device");
    return Step(items, logits);
  }

  // A step in two calls, so that the caller's host work overlaps the device's (the
  // scheduler's --overlap-steps): BeginStep plans, uploads and launches a step
  // (StepSampled when `sampled` is non-null, Step otherwise) and returns once it is
  // queued; EndStep waits for it and fills `logits` / `sampled`. `items` (and the
  // DeviceSampling specs they point to) may go once BeginStep returns; `logits` and
  // `sampled` belong to the backend until EndStep returns and must not be touched.
  // After an OK BeginStep, EndStep must be called exactly once, before the next
  // BeginStep, Step or StepSampled (those fail with FailedPrecondition while a step is in
  // flight). Other calls in between are allowed and behave as if made after the step
  // (a session freed meanwhile is freed after the step has used it; an export sees its
  // state after the step). On a BeginStep error nothing is in flight; an EndStep error
  // means the step failed (as Step's errors). The default runs the whole step in
  // BeginStep: backends without a queue (the CPU reference) need nothing more.
  virtual absl::Status BeginStep(const std::vector<StepInput>& items, std::vector<float>* logits,
                                 std::vector<SampledToken>* sampled) {
    return sampled ? StepSampled(items, logits, sampled) : Step(items, logits);
  }
  virtual absl::Status EndStep() { return absl::OkStatus(); }

  // Bytes held by one session (state + KV) and its cached KV tokens. SessionBytes is the
  // session's own view: it includes storage shared with other sessions, so the sum over
  // sessions can exceed Memory().used_bytes.
  virtual size_t SessionBytes(SessionId id) const = 0;
  virtual size_t SessionKvTokens(SessionId id) const = 0;
  virtual MemoryInfo Memory() const = 0;
  virtual DeviceUsage Usage() const { return {}; }
  // Upper bound on the bytes one session can grow to (with compression on), for admission.
  virtual size_t MaxSessionBytes() const = 0;

  // Memory reservations (docs/MEMORY.md). SessionBytesFor: the bytes a session holds
  // once `kv_tokens` tokens went into it (each sparse block holding that many KV rows,
  // the compression cap applied): an upper bound of SessionBytes of any such session,
  // shared storage counted fully. Pure arithmetic on the model's shape: unlike the rest of
  // this interface, any thread may call it.
  virtual size_t SessionBytesFor(size_t kv_tokens) const = 0;
  // Bytes Memory().used_bytes grows by when `id` is fed `tokens` more tokens in one step
  // (new KV rows, copies of pages it shares); 0 for an unknown session.
  virtual size_t StepBytes(SessionId id, size_t tokens) const = 0;
  // False once the backend is poisoned (a sticky device error): no step, export or new
  // session can be trusted any more; the server must exit and be restarted.
  virtual bool Healthy() const { return true; }
};

// An error that poisons the backend (the device context is lost): carries a payload that
// IsBackendLost recognises. The scheduler makes the server not-ready and exit on it.
absl::Status BackendLostError(absl::string_view message);
bool IsBackendLost(const absl::Status& s);

struct CpuBackendOptions {
  int threads = 0;               // 0 = hardware concurrency
  // Keep the large matrices (projections, channel mix, head) as IEEE fp16 and widen them
  // on the fly: half the bytes per decode token; activations and accumulation stay fp32.
  bool half_weights = false;
  size_t memory_budget_bytes = 0;  // 0 = unbounded
};
std::unique_ptr<Backend> MakeCpuBackend(std::shared_ptr<const Model> model,
                                        const CpuBackendOptions& opts = {});

// CudaBackendOptions::gemv_prefetch's auto rule: the widest hidden size it is on for (the
// 0.2B's 768 measured faster with it, the 3.6B's 2560 slower).
constexpr int kGemvPrefetchMaxC = 1024;
// CudaBackendOptions::gemv_split's auto rule: the 16-byte weight loads a lane may take in
// turn (the GEMV keeps 4 in flight, so one round at most).
constexpr int kGemvSplitLoads = 4;
// CudaBackendOptions::fused_chunk_select's auto rule: the most sessions a step may have for
// the decode attention kernel to choose the chunks itself (the steps that take programmatic
// dependent launch, where a launch fewer in the chain counts).
constexpr int kSelectInAttnMaxItems = 4;
struct CudaBackendOptions {
  int device = 0;
  bool bf16 = false;            // weights in bf16 instead of fp16
  // The large projection matrices in 8-bit E4M3 with a scale per output row (kernels/fp8.cuh,
  // `--weights fp8`): half the weight bytes; LoRA factors, the head and vectors stay half /
  // float32. Bounded error, not exact: docs/CUDA.md ("8-bit weights").
  bool fp8_weights = false;
  // The same matrices as int8 codes with a scale per output row (`--weights int8`): the
  // same bytes as fp8, a uniform step instead of 4 significant bits (smaller errors for
  // weights like a trained model's). Exclusive with fp8_weights.
  bool int8_weights = false;
  double gpu_memory_fraction = 0.9;
  // Session memory cap in bytes on top of the card's fraction (0 = the fraction alone):
  // the same meaning as the CPU backend's memory_budget_bytes (--memory-budget-bytes).
  size_t memory_budget_bytes = 0;
  // The step workspace is allocated once at start for steps of up to this many token rows
  // and sessions (the scheduler's --max-batch-tokens and --max-sessions), so that it never
  // grows mid-run and session memory is admitted against a fixed figure. 0 = grow on demand.
  int reserve_step_rows = 0;
  int reserve_step_items = 0;
  // Pure decode steps are captured into CUDA graphs and replayed (false: every step runs
  // its kernels eagerly, e.g. to see each kernel in a profiler).
  bool cuda_graphs = true;
  // With graphs on, a step that mixes decode items (one token) and prefill items runs as
  // two sub-steps: the decode items first (replayed from a graph), then the prefills
  // (eager). The weights are read twice; the decode part is one graph launch. The
  // whole step's memory is checked before either runs, so the second part does not fail
  // for the memory budget after the first ran. Off by default (docs/CUDA.md: measured).
  bool split_mixed_steps = false;
  // With graphs on, a pure decode step of n sessions is padded to a bucket of graph sizes
  // (n itself up to 16, then multiples of an eighth of the power of two below n) with
  // items of a pad session, so that a few dozen graphs serve every batch size instead of
  // one capture per size (docs/CUDA.md: measured).
  bool graph_buckets = true;
  // Programmatic dependent launch of the step's own kernels in steps of up to 4 sessions
  // (sm_90 and later; ignored before): each may be scheduled while the previous one
  // finishes (kernels/launch.cuh). docs/CUDA.md: measured.
  bool pdl = true;
  // State rows a thread of the sequential wkv7 kernel and of the chunked form's token pass
  // (1, 2 or 4; kernels/wkv7.cuh, Wkv7Params::rows_per_thread): more rows share each
  // token's staged inputs, fewer shared-memory reads for multi-token items; the same bits
  // (explicit roundings, CudaKernels.Wkv7RowsPerThreadSameBits). 2: measured 3.6B prefill
  // 0.92x / 0.91x the time at 1K / 4K tokens (H100, session 19; 4 rows the same). The fused
  // decode kernel keeps one row a thread (two were 1.02x the time at 256 sessions).
  int wkv_rows = 2;
  // Long prefills of few sessions use the chunked wkv7 recurrence (false: always the
  // sequential kernel). docs/CUDA.md.
  bool wkv_chunked = true;
  // The chunked recurrence's first pass as 64 x 64 matrix products on tensor cores (3xTF32,
  // kernels/wkv7_chunked.cuh, Wkv7ChunkedParams::matrix_pass_a; sm_90's shared memory, else
  // ignored) instead of two runs of the token loop a chunk. docs/CUDA.md: measured.
  bool wkv_matrix = false;
  // Rows from which an item takes the chunked recurrence; shorter items run the sequential
  // kernel, which is as fast or faster for them (docs/CUDA.md: measured on the H200).
  int wkv_chunked_min_len = 256;
  // Pure decode steps run each RWKV block's prep, recurrence and output norm as one kernel
  // (kernels/wkv7.cuh, Wkv7DecodeKernel; the same bits as the three kernels); false: three
  // launches as in every other step (bench_engine --fused-decode 0). docs/CUDA.md.
  bool fused_decode = true;
  // Pure decode steps append each attention layer's new key and value rows (and fold the
  // key into its chunk sum) inside the decode attention kernel, before it reads them
  // (kernels/attn_decode.cuh, AttnDecodeParams::append_k; the same bits as kv_append),
  // one launch fewer a layer; false: kv_append runs first as in every other step
  // (bench_engine --fused-append 0). Not in the batch-invariant mode. docs/CUDA.md.
  bool fused_kv_append = true;
  // Steps with items of several rows (prefill, mixed steps) run each LayerNorm and its
  // token-shift mixes as one launch (kernels/layernorm.cuh, LaunchLayerNormShiftRows: the
  // same bits as LayerNorm + token_shift), as decode steps already do; false: two launches
  // and the float32 copy of the normed rows between them (bench_engine --fused-norm-shift 0).
  // Hidden sizes up to kernels::kLnShiftRowsMaxC. docs/CUDA.md.
  bool fused_norm_shift = true;
  // Sparse decode items choose their top-k chunks inside the decode attention kernel (every
  // block of the item scores the chunks with chunk_select's code: the same bits) rather than
  // in a chunk_select launch first. -1 = auto: in steps of <= kSelectInAttnMaxItems sessions
  // (each block repeats the item's scoring, a few KB of chunk sums from L2); 0 never; 1 in
  // every step (bench_engine --fused-select). docs/CUDA.md.
  int fused_chunk_select = -1;
  // The fused decode kernel's warp 0 loads the post's inputs with the prep's, into shared
  // memory, rather than after the step (kernels/wkv7.cuh, Wkv7DecodeParams::prefetch_post;
  // the same bits). Off: within the run-to-run spread on the H200 (session 17,
  // bench/engine/results/h200_2026-12-05_s17/; bench_engine --decode-prefetch 1).
  bool decode_prefetch = false;
  // Decode steps of up to 4 sessions fold each LayerNorm (and its token-shift mixes) into
  // the prologue of the GEMV group that reads it (kernels/gemv.cuh, GemvFold: the same
  // arithmetic, the same bits: CudaFoldLayerNorm, passed on an H100), 32 launches fewer a
  // 0.2B step; the saved token-shift state is copied by the next group. Off: measured
  // slower (0.2B one session 1.14x the time, H100, session 19; docs/CUDA.md).
  bool fold_layernorm = false;
  // The GEMV kernel (decode steps of <= 4 rows) asks L2 for its weight rows before its
  // programmatic-dependent-launch wait, so that their reads overlap the kernel before it
  // (kernels/gemv.cuh, GemvGroupParams::prefetch_w; the same bits). -1 = auto: on for
  // models of hidden size <= kGemvPrefetchMaxC, off above; 0 off; 1 on (bench_engine
  // --gemv-prefetch). Measured (H100, session 25, same call): 0.2B one session 0.914x the
  // time a token (no logits 0.877x), 4 sessions 0.93x; 3.6B one session 1.08x, fp8 1.06x
  // (its groups are 13-52 MB of weights; not profiled why: likely the prefetches compete
  // with the kernel before for DRAM and L2).
  int gemv_prefetch = -1;
  // In PDL steps (<= 4 sessions) the decode kernels read what the kernel right before them
  // does not write before their PDL wait: the LayerNorms' weights, mixes and saved vectors,
  // the fused decode kernel's layer vectors and state, the residual of the GEMV's
  // accumulating products, L2 prefetches of the attention's key and value rows
  // (kernels/launch.cuh states the rule; the same loads, the same bits). -1 = auto: on for
  // hidden sizes <= kGemvPrefetchMaxC, as the GEMV's weight prefetch; 0 off; 1 on
  // (bench_engine --early-reads). Measured: docs/CUDA.md ("Reads before the PDL wait").
  int early_reads = -1;
  // Warps summing each output row of the GEMV (kernels/gemv.cuh, GemvParams::ksplit): -1 auto
  // (the default): for hidden sizes <= kGemvPrefetchMaxC, per product the fewest of 1, 2, 4
  // that leave each lane at most kGemvSplitLoads 16-byte weight loads (the 0.2B: the channel
  // mix's 3072 -> 768 value product at 4 (2 with 8-bit weights), every other at 1), one
  // above; 0 one warp a row everywhere; 1, 2 or 4: that many for every product (bench_engine
  // --gemv-split). Each product's sums depend on its shape and this option alone, not on the
  // rows or the step. Measured (H100, session 31, same call): 0.2B B = 1 no logits 0.968x
  // the time, B = 4 0.883x, one session 0.93-0.97x. Forced everywhere (a first form's
  // calls, against its own one warp a row): 2 at 0.2B B = 1 1.07x, 4 on the 3.6B 1.33x
  // (docs/CUDA.md).
  int gemv_split = -1;
  // The decode attention's blocks per multiprocessor that its key slices aim at: an
  // (item, head) of L keys is cut into min(64, L / 64, ceil(this * SMs / (items * heads)))
  // slices (bench_engine --attn-blocks-per-sm; 1..16). Session 34's ncu of a 0.2B token at
  // 32K context with 2: 264 blocks of 128 threads, 11.8% achieved occupancy, 681 GB/s.
  int attn_blocks_per_sm = 2;
  // Steps of 5..16 rows (5..32 with 8-bit weights) run their projections on tensor cores in
  // our skinny kernel (kernels/gemm_skinny.cuh: the weights read once, 8-bit ones without a
  // dequantized copy) instead of cuBLAS; false: cuBLAS (bench_engine --skinny-mma 0).
  // Measured on the H200: docs/CUDA.md ("Skinny products").
  bool skinny_mma = true;
  // Batch- and split-invariant mode (--cuda-batch-invariant 1): a session's logits and
  // state do not depend on what else is in the step nor on how its tokens are cut into
  // calls (below the model's split-invariant length, as on the CPU): every projection runs
  // in the skinny kernel's fixed reduction order whatever the row count (32-row slabs
  // beyond 32 rows, from 64 rows the tiled kernel of kernels/gemm_invariant.cuh, the GEMV
  // in 4-row slabs for shapes the skinny kernel cannot take),
  // full-attention rows of decode and prefill alike run the prefill kernel (key tiles of 64
  // from row 0), sparse decode attention splits each item by its own key count, and the
  // recurrence is always the sequential kernel. The prefix cache then serves checkpoints at
  // any token below that length (docs/PREFIX_CACHE.md). Slower, chiefly for prefill
  // (docs/BATCH_INVARIANCE.md: measured 1.5-3x the step time, prefill 0.15-0.22x the rate).
  // skinny_mma and wkv_chunked are ignored. Experimental; its tests
  // (tests/cuda/batch_invariant_test.cc) passed on an H100 (session 19).
  bool batch_invariant = false;
  // Blocks the device sampler splits a sampled row over (kernels/sample.cuh): 0 = chosen
  // from the row count and the card (SampleSplits); else forced, 1..32. It changes no bit
  // of the results; for measurements (bench_engine --sample-splits).
  int sample_splits = 0;
  // Logits rows for the host (Step, and rows without a device sampler) are copied from the
  // GPU into a pinned staging buffer, then into the caller's vector once the stream is done,
  // while they take at most this many bytes (0: never; -1 = auto: 16 MiB, 64 rows of a
  // 65536-token vocabulary); larger copies go straight into the caller's pageable vector
  // (the driver stages those itself). bench_engine --pinned-logits-mb. docs/CUDA.md
  // ("Logits to the host").
  long long pinned_logits_bytes = -1;
  // Freed sessions' state blocks kept for new sessions (no cudaMalloc / cudaFree and no
  // stream synchronisation per session); their bytes come off the session budget at
  // start, at most an eighth of it. -1 = auto: up to 32 blocks and 256 MiB. docs/MEMORY.md.
  int free_state_blocks = -1;
};
// Returns Unavailable (with the reason) when no usable GPU or the build has no CUDA.
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(std::shared_ptr<const Model> model,
                                                         const CudaBackendOptions& opts);
// "" when a GPU is usable, else why not (no driver, no device, built without CUDA).
std::string CudaUnavailableReason();

}  // namespace rwkvx
