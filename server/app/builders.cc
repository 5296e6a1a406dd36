// The builders of `rwkvx serve` (builders.h): flags -> model, tokenizer, backend, options.
#include "server/app/builders.h"

#include <algorithm>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/initial_state.h"
#include "absl/time/clock.h"
#include "server/embedded/embedded_model.h"
#include "server/log.h"

namespace rwkvx {
namespace {

// The random-weight model of --embedded-seed (tests, benchmarks); the default with no
// --model is the trained demo model (server/embedded/).
constexpr const char* kRandomName = "rwkvx-embedded-random-bytes";

ModelShape EmbeddedShape() {
  ModelShape s;
  s.vocab = 257;
  s.n_embd = 256;
  s.head_size = 64;
  s.n_head = 4;
  s.n_rwkv_layer = 4;
  s.n_attn_layer = 2;
  s.ffn_dim = 1024;
  s.rank_w = 32;
  s.rank_a = 32;
  s.rank_v = 16;
  s.rank_g = 64;
  return s;
}

absl::Status ApplyAttnFlags(const ServeFlags& f, SparseAttnConfig* c) {
  if (f.attn_chunk_size >= 0) c->chunk_size = f.attn_chunk_size;
  if (f.attn_topk >= 0) c->topk = f.attn_topk;
  if (f.attn_full_threshold >= -1) c->full_attn_threshold = f.attn_full_threshold;
  if (f.attn_decode_mode == "sparse") c->decode_mode = AttnDecodeMode::kSparse;
  else if (f.attn_decode_mode == "full") c->decode_mode = AttnDecodeMode::kFull;
  else if (!f.attn_decode_mode.empty()) return absl::InvalidArgumentError("--attn-decode-mode: sparse or full");
  if (f.attn_prefill_mode == "chunk") c->prefill_mode = AttnPrefillMode::kChunk;
  else if (f.attn_prefill_mode == "full") c->prefill_mode = AttnPrefillMode::kFull;
  else if (!f.attn_prefill_mode.empty()) return absl::InvalidArgumentError("--attn-prefill-mode: chunk or full");
  if (f.kv_max >= 0) c->max_kv_cache_size = f.kv_max;
  if (f.kv_window >= 0) c->kv_cache_window_size = f.kv_window;
  if (f.kv_min >= 0) c->min_kv_cache_size = f.kv_min;
  if (f.attn_reference == "0.1") c->rules = ReferenceRules::k01;
  else if (f.attn_reference == "0.2") c->rules = ReferenceRules::k02;
  else if (!f.attn_reference.empty()) return absl::InvalidArgumentError("--attn-reference: 0.1 or 0.2");
  return c->Validate();
}

absl::StatusOr<std::unique_ptr<Backend>> PickBackend(const ServeFlags& f,
                                                     std::shared_ptr<const Model> model) {
  CpuBackendOptions cpu;
  cpu.threads = f.threads;
  cpu.memory_budget_bytes = static_cast<size_t>(f.memory_budget_bytes);
  cpu.half_weights = f.weights == "fp16";
  const bool cuda_only = f.weights == "bf16" || f.weights == "fp8" || f.weights == "int8";
  if (cuda_only && f.backend == "cpu")
    return absl::InvalidArgumentError("--weights " + f.weights +
                                      " is a CUDA option; the CPU backend takes fp32 or fp16");
  if (f.backend == "cpu") {
    SLOG(INFO) << "backend: cpu (--backend cpu)";
    return MakeCpuBackend(model, cpu);
  }
  std::string why = CudaUnavailableReason();
  if (f.backend == "cuda" && !why.empty()) {
    return absl::FailedPreconditionError("--backend cuda: CUDA is not usable: " + why);
  }
  if (why.empty()) {
    CudaBackendOptions c;
    c.device = f.cuda_device;
    c.bf16 = f.weights == "bf16";
    c.fp8_weights = f.weights == "fp8";
    c.int8_weights = f.weights == "int8";
    c.gpu_memory_fraction = f.gpu_memory_fraction;
    c.memory_budget_bytes = static_cast<size_t>(f.memory_budget_bytes);
    c.reserve_step_rows = f.max_batch_tokens > 0 ? f.max_batch_tokens : kBatchTokensCuda;  // auto: CUDA's
    if (f.cuda_wkv_chunked_min > 0) c.wkv_chunked_min_len = f.cuda_wkv_chunked_min;
    c.free_state_blocks = f.cuda_free_state_blocks;
    c.reserve_step_items = f.max_sessions;
    c.split_mixed_steps = f.cuda_split_mixed != 0;
    c.graph_buckets = f.cuda_graph_buckets != 0;
    c.skinny_mma = f.cuda_skinny_mma != 0;
    c.batch_invariant = f.cuda_batch_invariant != 0;
    auto b = MakeCudaBackend(model, c);
    if (b.ok()) {
      SLOG(INFO) << "backend: cuda (device " << f.cuda_device << "; a usable GPU was found; weights "
                 << (f.weights.empty() || f.weights == "fp32" ? "fp16" : f.weights)
                 << (f.weights == "fp8" || f.weights == "int8" ? ", experimental: docs/CUDA.md" : "")
                 << (c.batch_invariant ? "; batch-invariant kernels, experimental: docs/BATCH_INVARIANCE.md" : "") << ")";
      return b;
    }
    if (f.backend == "cuda") return b.status();
    why = std::string(b.status().message());
  }
  SLOG(INFO) << "backend: cpu (--backend auto: CUDA unavailable: " << why << ")";
  if (cuda_only) {  // a CUDA-only choice; the CPU stays exact
    cpu.half_weights = false;
    SLOG(INFO) << "--weights " << f.weights << " applies to the CUDA backend only: the CPU backend runs fp32";
  }
  return MakeCpuBackend(model, cpu);
}

// --allowed-origins as a list (empty entries dropped).
std::vector<std::string> AllowedOrigins(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view o : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(o));
  }
  return out;
}

}  // namespace

absl::Status CheckServeFlags(const ServeFlags& f) {
  auto bad = [](const char* m) { return absl::InvalidArgumentError(m); };
  if (f.max_sessions < 1) return bad("--max-sessions must be >= 1");
  if (f.max_queue < 0) return bad("--max-queue must be >= 0");
  if (f.max_batch_tokens < 0 || f.prefill_chunk < 1)
    return bad("--max-batch-tokens must be >= 1 (0 = auto) and --prefill-chunk >= 1");
  if (f.cuda_wkv_chunked_min < 0) return bad("--cuda-wkv-chunked-min must be >= 1 (0 = the default)");
  if (f.cuda_free_state_blocks < -1) return bad("--cuda-free-state-blocks must be >= 0 (-1 = auto)");
  if (f.prefill_interval < 1 || f.prefill_interval > 1000) return bad("--prefill-interval must be in [1, 1000]");
  if (f.max_tokens < 1 || f.default_max_tokens < 1 || f.default_max_tokens > f.max_tokens)
    return bad("need 1 <= --default-max-tokens <= --max-tokens");
  if (f.max_prompt_tokens < 0) return bad("--max-prompt-tokens must be >= 1 (0 = the model's)");
  if (f.prefix_cache_bytes < -1) return bad("--prefix-cache-bytes must be >= 0 (0 = off, -1 = auto)");
  if (f.prefix_cache_min_tokens < 1) return bad("--prefix-cache-min-tokens must be >= 1");
  if (f.request_timeout_s <= 0 || f.drain_grace_s < 0) return bad("timeouts must be positive");
  if (!(f.session_lease_s >= 1)) return bad("--session-lease-seconds must be >= 1");
  if ((f.max_body_bytes != 0 && f.max_body_bytes < 1024) || f.max_header_bytes < 1024)
    return bad("--max-body-bytes and --max-header-bytes must be >= 1024 (--max-body-bytes 0 = auto)");
  if (f.max_json_depth < 2) return bad("--max-json-depth must be >= 2");
  if (!(f.http_read_timeout_s > 0) || !(f.http_idle_timeout_s > 0))
    return bad("--http-read-timeout and --http-idle-timeout must be > 0");
  if (f.http_max_connections < 1) return bad("--http-max-connections must be >= 1");
  if (f.tokenizer != "auto" && f.tokenizer != "world" && f.tokenizer != "bytes")
    return bad("--tokenizer: auto, world or bytes");
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    return bad("--backend: auto, cpu or cuda");
  if (!f.weights.empty() && f.weights != "fp32" && f.weights != "fp16" && f.weights != "bf16" && f.weights != "fp8" &&
      f.weights != "int8")
    return bad("--weights: fp32, fp16, bf16, fp8 or int8");
  if (f.sampling != "auto" && f.sampling != "device" && f.sampling != "host")
    return bad("--sampling: auto, device or host");
  if (!(f.gpu_memory_fraction > 0 && f.gpu_memory_fraction <= 1))
    return bad("--gpu-memory-fraction must be in (0, 1]");
  if (f.cuda_split_mixed != 0 && f.cuda_split_mixed != 1) return bad("--cuda-split-mixed: 0 or 1");
  if (f.cuda_graph_buckets != 0 && f.cuda_graph_buckets != 1) return bad("--cuda-graph-buckets: 0 or 1");
  if (f.cuda_skinny_mma != 0 && f.cuda_skinny_mma != 1) return bad("--cuda-skinny-mma: 0 or 1");
  if (f.cuda_batch_invariant != 0 && f.cuda_batch_invariant != 1) return bad("--cuda-batch-invariant: 0 or 1");
  if (f.cuda_warmup != 0 && f.cuda_warmup != 1) return bad("--cuda-warmup: 0 or 1");
  if (f.stream_writer != "auto" && f.stream_writer != "on" && f.stream_writer != "off")
    return bad("--stream-writer: auto, on or off");
  if (f.overlap_steps != 0 && f.overlap_steps != 1) return bad("--overlap-steps: 0 or 1");
  for (const std::string& o : AllowedOrigins(f.allowed_origins)) {
    // "*", or scheme://host[:port] exactly as browsers send Origin (no path, no slash at the end).
    const size_t sep = o.find("://");
    const bool ok = o == "*" || (sep != std::string::npos && sep > 0 && o.size() > sep + 3 &&
                                 o.find_first_of("/?#* \t\r\n", sep + 3) == std::string::npos &&
                                 o.find_first_of(" \t\r\n") == std::string::npos);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("--allowed-origins: '", o.substr(0, 100),
                                                     "' is not * or an origin such as https://app.example.com:8443"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ServedModel> BuildServedModel(const ServeFlags& f) {
  ServedModel out;
  bool embedded = false;
  if (f.model.empty() && f.embedded_seed >= 0) {
    out.model = MakeRandomModel(EmbeddedShape(), static_cast<uint64_t>(f.embedded_seed), kRandomName);
    out.random_weights = true;
    SLOG(WARNING) << "model: --embedded-seed given; serving '" << kRandomName
                  << "' with RANDOM weights (seed " << f.embedded_seed
                  << "): its output is meaningless text";
  } else if (f.model.empty()) {
    auto m = LoadEmbeddedModel();
    if (!m.ok()) return m.status();
    out.model = *m;
    embedded = true;
    SLOG(INFO) << "model: no --model given; serving the embedded trained demo model '"
               << kEmbeddedModelName << "' (byte-level, ~5M parameters)";
  } else {
    auto m = LoadModelFile(f.model);
    if (!m.ok()) return m.status();
    out.model = *m;
    SLOG(INFO) << "model: loaded " << f.model;
  }
  for (const auto& w : out.model->warnings) SLOG(WARNING) << "model: " << w;
  if (auto s = ApplyAttnFlags(f, &out.model->attn); !s.ok()) return s;
  const std::string file = f.model.substr(f.model.find_last_of('/') + 1);
  out.name = f.model_name;
  if (out.name.empty()) {
    if (out.random_weights) out.name = kRandomName;
    else if (embedded) out.name = kEmbeddedModelName;
    else if (!out.model->name.empty()) out.name = out.model->name;
    else out.name = file;
  }
  out.description = out.random_weights ? "embedded RWKV-X with random weights (no trained model loaded)"
                    : embedded         ? "embedded byte-level RWKV-X demo model (~5M parameters, trained)"
                                       : "RWKV-X loaded from " + file;
  return out;
}

void ApplyModelLimits(const Model& model, ServeFlags* f) {
  const ServeFlags defaults;
  std::string prompt_from = "--max-prompt-tokens";
  if (f->max_prompt_tokens == 0 && model.attn.context_length > 0) {
    f->max_prompt_tokens = model.attn.context_length;
    prompt_from = "the model's declared context (sidecar ctx_len)";
  } else if (f->max_prompt_tokens == 0) {
    f->max_prompt_tokens = kDefaultPromptCap;
    prompt_from = absl::StrCat("default: the model declares no context, so ", kDefaultPromptCap);
  }
  std::string body_from = "--max-body-bytes";
  if (f->max_body_bytes == 0) {
    f->max_body_bytes = std::max(1LL << 20, kBodyBytesPerPromptToken * f->max_prompt_tokens);
    body_from = absl::StrCat("default: ", kBodyBytesPerPromptToken, " bytes per prompt token, at least 1 MiB");
  }
  auto from = [](bool is_default, const char* flag) {
    return std::string(is_default ? "default" : flag);
  };
  SLOG(INFO) << "limits: prompt <= " << f->max_prompt_tokens << " tokens per request or session append ("
             << prompt_from << "); max_tokens <= " << f->max_tokens << " ("
             << from(f->max_tokens == defaults.max_tokens, "--max-tokens") << "), "
             << f->default_max_tokens << " when not given ("
             << from(f->default_max_tokens == defaults.default_max_tokens, "--default-max-tokens")
             << "); HTTP body <= " << f->max_body_bytes << " bytes (" << body_from
             << "); snapshot upload <= " << f->max_snapshot_bytes << " bytes ("
             << from(f->max_snapshot_bytes == defaults.max_snapshot_bytes, "--max-snapshot-bytes")
             << "); KV compression "
             << (model.attn.max_kv_cache_size > 0 ? absl::StrCat("past ", model.attn.max_kv_cache_size, " rows")
                                                  : std::string("off"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> BuildTokenizer(const ServeFlags& f, const Model& model) {
  std::unique_ptr<Tokenizer> tok;
  std::string tk = f.tokenizer == "auto" ? (f.vocab.empty() ? "bytes" : "world") : f.tokenizer;
  if (tk == "world") {
    if (f.vocab.empty()) return absl::InvalidArgumentError("--tokenizer world needs --vocab PATH");
    auto t = LoadWorldTokenizer(f.vocab);
    if (!t.ok()) return t.status();
    tok = std::move(*t);
  } else {
    tok = MakeByteTokenizer();
  }
  if (tok->VocabSize() > model.shape.vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the tokenizer has ", tok->VocabSize(), " ids but the model only ", model.shape.vocab));
  }
  SLOG(INFO) << "tokenizer: " << tok->Name() << " (" << tok->VocabSize() << " ids)";
  return tok;
}

absl::StatusOr<std::unique_ptr<Backend>> BuildBackend(const ServeFlags& f,
                                                      std::shared_ptr<const Model> model) {
  auto backend = PickBackend(f, std::move(model));
  if (!backend.ok()) return backend.status();
  if (f.sampling == "host" || !(*backend)->SupportsDeviceSampling())
    SLOG(INFO) << "sampling: host" << (f.sampling == "host" ? " (--sampling host)" : " (the backend returns logits)")
               << (f.sampling == "auto" ? " [--sampling auto]" : "");
  else
    SLOG(INFO) << "sampling: device (only token ids leave the " << (*backend)->Name() << " backend) [--sampling "
               << f.sampling << "]";
  return backend;
}

void ResolveBatchTokens(const std::string& backend_name, ServeFlags* f) {
  if (f->max_batch_tokens > 0) {
    SLOG(INFO) << "step size: " << f->max_batch_tokens << " tokens (--max-batch-tokens)";
    return;
  }
  const bool cuda = backend_name == "cuda";
  f->max_batch_tokens = cuda ? kBatchTokensCuda : kBatchTokensCpu;
  SLOG(INFO) << "step size: " << f->max_batch_tokens << " tokens (--max-batch-tokens auto: "
             << (cuda ? "CUDA" : "CPU") << " backend; docs/SERVER.md)";
}

void ApplyPrefixCacheDefault(const MemoryInfo& memory, ServeFlags* f) {
  if (f->prefix_cache_bytes == 0) {
    SLOG(INFO) << "prefix cache: off (--prefix-cache-bytes 0)";
    return;
  }
  if (f->prefix_cache_bytes > 0) {
    SLOG(INFO) << "prefix cache: " << f->prefix_cache_bytes << " bytes (--prefix-cache-bytes)";
    return;
  }
  if (memory.capacity_bytes > 0) {
    f->prefix_cache_bytes = static_cast<long long>(memory.capacity_bytes / 4);
    SLOG(INFO) << "prefix cache: " << f->prefix_cache_bytes << " bytes (a quarter of the backend's "
               << memory.capacity_bytes << " bytes of session memory; --prefix-cache-bytes 0 turns it off)";
  } else {
    f->prefix_cache_bytes = kPrefixCacheCpuDefaultBytes;
    SLOG(INFO) << "prefix cache: " << f->prefix_cache_bytes << " bytes (default of a backend without "
               << "a memory budget; --prefix-cache-bytes 0 turns it off)";
  }
}

bool StreamWriterOn(const ServeFlags& f) {
  if (f.stream_writer != "auto") return f.stream_writer == "on";
  return std::thread::hardware_concurrency() >= 4;  // 0 (unknown) counts as few
}

SchedulerOptions SchedulerOptionsFromFlags(const ServeFlags& f) {
  SchedulerOptions so;
  so.max_running = f.max_sessions;
  so.max_queued = f.max_queue;
  so.max_batch_tokens = BatchTokens(f);
  so.prefill_chunk = f.prefill_chunk;
  so.prefill_interval = f.prefill_interval;
  so.prefix_cache_bytes = static_cast<size_t>(f.prefix_cache_bytes);
  so.prefix_cache_min_tokens = f.prefix_cache_min_tokens;
  so.device_sampling = f.sampling != "host";  // auto or device: where the backend samples
  so.stream_writer = StreamWriterOn(f);
  so.overlap_steps = f.overlap_steps != 0;
  so.max_stored_sessions = f.max_stored_sessions;
  so.stored_session_budget_bytes = static_cast<size_t>(f.session_memory_bytes);
  so.stored_session_idle_timeout = absl::Seconds(f.session_idle_timeout_s);
  so.session_dir = f.session_dir;
  so.session_host_budget_bytes = static_cast<size_t>(std::max(0LL, f.session_host_bytes));
  so.session_disk_budget_bytes = static_cast<size_t>(std::max(0LL, f.session_disk_bytes));
  so.max_snapshot_bytes = static_cast<size_t>(std::max(0LL, f.max_snapshot_bytes));
  so.session_lease_time = absl::Seconds(f.session_lease_s);
  return so;
}

ServiceLimits ServiceLimitsFromFlags(const ServeFlags& f) {
  ServiceLimits lim;
  lim.max_prompt_tokens = f.max_prompt_tokens;
  lim.max_tokens = f.max_tokens;
  lim.default_max_tokens = f.default_max_tokens;
  lim.max_n = f.max_n;
  lim.request_timeout = absl::Seconds(f.request_timeout_s);
  lim.stream_buffer_bytes = static_cast<size_t>(f.stream_buffer_bytes);
  return lim;
}

ModelDescription DescribeModel(const ServedModel& m, const Tokenizer& tok,
                               const std::string& backend_name) {
  ModelDescription desc;
  desc.id = m.name;
  desc.random_weights = m.random_weights;
  desc.description = m.description;
  desc.tokenizer = tok.Name();
  desc.backend = backend_name;
  desc.vocab = m.model->shape.vocab;
  desc.created_unix = absl::ToUnixSeconds(absl::Now());
  return desc;
}

HttpOptions HttpOptionsFromFlags(const ServeFlags& f, const ApiKeys* keys) {
  HttpOptions ho;
  ho.host = f.host;
  ho.port = f.http_port;
  ho.threads = f.http_threads;
  ho.max_body_bytes = static_cast<size_t>(f.max_body_bytes);
  ho.max_header_bytes = static_cast<size_t>(f.max_header_bytes);
  ho.max_json_depth = f.max_json_depth;
  ho.api_keys = keys;
  ho.socket_send_buffer_bytes = f.http_send_buffer_bytes;
  ho.read_timeout = absl::Seconds(f.http_read_timeout_s);
  ho.idle_timeout = absl::Seconds(f.http_idle_timeout_s);
  ho.max_connections = f.http_max_connections;
  ho.allowed_origins = AllowedOrigins(f.allowed_origins);
  return ho;
}

absl::StatusOr<std::vector<std::string>> ApiKeysFromFlags(const ServeFlags& f) {
  std::vector<std::string> keys = f.api_keys;
  if (!f.api_key_file.empty()) {
    auto from_file = ApiKeys::ReadFile(f.api_key_file);
    if (!from_file.ok()) {
      return absl::Status(from_file.status().code(),
                          "--api-key-file: " + std::string(from_file.status().message()));
    }
    keys.insert(keys.end(), from_file->begin(), from_file->end());
  }
  return keys;
}

void ReloadApiKeys(const ServeFlags& f, ApiKeys* api_keys) {
  if (f.api_key_file.empty()) {
    SLOG(INFO) << "SIGHUP: no --api-key-file to re-read; API keys unchanged";
    return;
  }
  auto keys = ApiKeysFromFlags(f);
  if (!keys.ok()) {
    SLOG(ERROR) << "SIGHUP: " << keys.status().message() << "; API keys unchanged";
  } else if (keys->empty() && api_keys->Required()) {
    // An emptied file must not turn authentication off.
    SLOG(ERROR) << "SIGHUP: --api-key-file has no keys; keeping the " << api_keys->size()
                << " current keys (authentication stays on)";
  } else {
    SLOG(INFO) << "SIGHUP: API keys reloaded from --api-key-file (" << keys->size() << " keys)";
    api_keys->Replace(std::move(*keys));
  }
}

absl::StatusOr<std::unique_ptr<InitialStates>> BuildInitialStates(const ServeFlags& f, const Model& model) {
  auto out = std::make_unique<InitialStates>();
  for (const std::string& spec : f.initial_states) {
    const size_t eq = spec.find('=');
    const std::string name = spec.substr(0, eq);
    if (eq == std::string::npos || name.empty() || eq + 1 == spec.size())
      return absl::InvalidArgumentError("--initial-state takes NAME=PATH, got '" + spec + "'");
    auto st = LoadInitialStateFile(spec.substr(eq + 1), model.shape);
    if (!st.ok()) return absl::InvalidArgumentError("--initial-state " + name + ": " + std::string(st.status().message()));
    if (!out->Add(name, spec.substr(eq + 1), std::move(*st)))
      return absl::InvalidArgumentError("--initial-state: the name '" + name + "' is given twice");
    SLOG(INFO) << "initial state '" << name << "' loaded from " << spec.substr(eq + 1);
  }
  return out;
}

}  // namespace rwkvx
