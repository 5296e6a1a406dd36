// rwkvx::ServeMain: `rwkvx serve`. Loads the model, picks the backend, starts the
// scheduler, the HTTP and gRPC frontends, and waits for SIGTERM/SIGINT to drain.
// Runs on the main thread; owns every server object, destroyed in reverse order.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "server/grpc_server.h"
#include "server/http_server.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/embedded/embedded_model.h"
#include "server/scheduler.h"
#include "server/serve_flags.h"
#include "server/service.h"
#include "tools/subcommands.h"

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

absl::Status CheckLimits(const ServeFlags& f) {
  auto bad = [](const char* m) { return absl::InvalidArgumentError(m); };
  if (f.max_sessions < 1) return bad("--max-sessions must be >= 1");
  if (f.max_queue < 0) return bad("--max-queue must be >= 0");
  if (f.max_batch_tokens < 1 || f.prefill_chunk < 1) return bad("--max-batch-tokens and --prefill-chunk must be >= 1");
  if (f.max_tokens < 1 || f.default_max_tokens < 1 || f.default_max_tokens > f.max_tokens)
    return bad("need 1 <= --default-max-tokens <= --max-tokens");
  if (f.max_prompt_tokens < 1) return bad("--max-prompt-tokens must be >= 1");
  if (f.prefix_cache_bytes < 0) return bad("--prefix-cache-bytes must be >= 0 (0 = off)");
  if (f.prefix_cache_min_tokens < 1) return bad("--prefix-cache-min-tokens must be >= 1");
  if (f.request_timeout_s <= 0 || f.drain_grace_s < 0) return bad("timeouts must be positive");
  if (f.max_body_bytes < 1024 || f.max_header_bytes < 1024) return bad("--max-body-bytes and --max-header-bytes must be >= 1024");
  if (f.max_json_depth < 2) return bad("--max-json-depth must be >= 2");
  if (!(f.http_read_timeout_s > 0) || !(f.http_idle_timeout_s > 0))
    return bad("--http-read-timeout and --http-idle-timeout must be > 0");
  if (f.http_max_connections < 1) return bad("--http-max-connections must be >= 1");
  if (f.tokenizer != "auto" && f.tokenizer != "world" && f.tokenizer != "bytes")
    return bad("--tokenizer: auto, world or bytes");
  if (f.backend != "auto" && f.backend != "cpu" && f.backend != "cuda")
    return bad("--backend: auto, cpu or cuda");
  if (!f.weights.empty() && f.weights != "fp32" && f.weights != "fp16" && f.weights != "bf16")
    return bad("--weights: fp32, fp16 or bf16");
  if (f.sampling != "device" && f.sampling != "host") return bad("--sampling: device or host");
  if (!(f.gpu_memory_fraction > 0 && f.gpu_memory_fraction <= 1))
    return bad("--gpu-memory-fraction must be in (0, 1]");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> PickBackend(const ServeFlags& f,
                                                     std::shared_ptr<const Model> model) {
  CpuBackendOptions cpu;
  cpu.threads = f.threads;
  cpu.memory_budget_bytes = static_cast<size_t>(f.memory_budget_bytes);
  cpu.half_weights = f.weights == "fp16";
  if (f.weights == "bf16" && f.backend == "cpu")
    return absl::InvalidArgumentError("--weights bf16 is a CUDA option; the CPU backend takes fp32 or fp16");
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
    c.gpu_memory_fraction = f.gpu_memory_fraction;
    auto b = MakeCudaBackend(model, c);
    if (b.ok()) {
      SLOG(INFO) << "backend: cuda (device " << f.cuda_device << "; a usable GPU was found)";
      return b;
    }
    if (f.backend == "cuda") return b.status();
    why = std::string(b.status().message());
  }
  SLOG(INFO) << "backend: cpu (--backend auto: CUDA unavailable: " << why << ")";
  if (f.weights == "bf16") cpu.half_weights = false;  // a CUDA-only choice; CPU stays exact
  return MakeCpuBackend(model, cpu);
}

// Shutdown signals reach the main thread through a self-pipe: a process-wide handler
// (whatever thread the kernel picks, e.g. one of OpenBLAS's) writes the signal number.
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &b, 1);
  (void)ignored;
}

void InstallSignalHandlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);  // re-read --api-key-file
  signal(SIGPIPE, SIG_IGN);
}

// Waits up to `timeout_ms` (-1 = forever) for a signal; returns it, or 0.
int WaitSignal(int timeout_ms) {
  struct pollfd p = {g_signal_pipe[0], POLLIN, 0};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    unsigned char b = 0;
    if (read(g_signal_pipe[0], &b, 1) == 1) return b;
    return 0;
  }
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "rwkvx serve: %s\n", std::string(s.message()).c_str());
  return 2;
}

}  // namespace

int ServeMain(int argc, char** argv) {
  ServeFlags f;
  if (auto s = ParseServeFlags(argc, argv, &f); !s.ok()) return Fail(s);
  if (f.help) {
    std::fputs(ServeHelp().c_str(), stdout);
    return 0;
  }
  if (auto s = CheckLimits(f); !s.ok()) return Fail(s);
  // --api-key flags plus --api-key-file; SIGHUP re-reads the file (ReloadApiKeys).
  auto key_set = [&f]() -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> keys = f.api_keys;
    if (!f.api_key_file.empty()) {
      auto from_file = ApiKeys::ReadFile(f.api_key_file);
      if (!from_file.ok()) return absl::Status(from_file.status().code(), "--api-key-file: " + std::string(from_file.status().message()));
      keys.insert(keys.end(), from_file->begin(), from_file->end());
    }
    return keys;
  };
  auto initial_keys = key_set();
  if (!initial_keys.ok()) return Fail(initial_keys.status());
  ApiKeys api_keys(std::move(*initial_keys));
  auto reload_keys = [&] {
    if (f.api_key_file.empty()) {
      SLOG(INFO) << "SIGHUP: no --api-key-file to re-read; API keys unchanged";
      return;
    }
    auto keys = key_set();
    if (!keys.ok()) {
      SLOG(ERROR) << "SIGHUP: " << keys.status().message() << "; API keys unchanged";
    } else if (keys->empty() && api_keys.Required()) {
      // An emptied file must not turn authentication off.
      SLOG(ERROR) << "SIGHUP: --api-key-file has no keys; keeping the " << api_keys.size()
                  << " current keys (authentication stays on)";
    } else {
      SLOG(INFO) << "SIGHUP: API keys reloaded from --api-key-file (" << keys->size() << " keys)";
      api_keys.Replace(std::move(*keys));
    }
  };
  InstallSignalHandlers();

  // Model.
  std::shared_ptr<Model> model;
  bool random_weights = false;
  bool embedded = false;
  if (f.model.empty() && f.embedded_seed >= 0) {
    model = MakeRandomModel(EmbeddedShape(), static_cast<uint64_t>(f.embedded_seed), kRandomName);
    random_weights = true;
    SLOG(WARNING) << "model: --embedded-seed given; serving '" << kRandomName
                  << "' with RANDOM weights (seed " << f.embedded_seed
                  << "): its output is meaningless text";
  } else if (f.model.empty()) {
    auto m = LoadEmbeddedModel();
    if (!m.ok()) return Fail(m.status());
    model = *m;
    embedded = true;
    SLOG(INFO) << "model: no --model given; serving the embedded trained demo model '"
               << kEmbeddedModelName << "' (byte-level, ~5M parameters)";
  } else {
    auto m = LoadModelFile(f.model);
    if (!m.ok()) return Fail(m.status());
    model = *m;
    SLOG(INFO) << "model: loaded " << f.model;
  }
  for (const auto& w : model->warnings) SLOG(WARNING) << "model: " << w;
  if (auto s = ApplyAttnFlags(f, &model->attn); !s.ok()) return Fail(s);
  std::string name = f.model_name;
  if (name.empty()) {
    if (random_weights) name = kRandomName;
    else if (embedded) name = kEmbeddedModelName;
    else if (!model->name.empty()) name = model->name;
    else name = f.model.substr(f.model.find_last_of('/') + 1);
  }

  // Tokenizer.
  std::unique_ptr<Tokenizer> tok;
  std::string tk = f.tokenizer == "auto" ? (f.vocab.empty() ? "bytes" : "world") : f.tokenizer;
  if (tk == "world") {
    if (f.vocab.empty()) return Fail(absl::InvalidArgumentError("--tokenizer world needs --vocab PATH"));
    auto t = LoadWorldTokenizer(f.vocab);
    if (!t.ok()) return Fail(t.status());
    tok = std::move(*t);
  } else {
    tok = MakeByteTokenizer();
  }
  if (tok->VocabSize() > model->shape.vocab) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "the tokenizer has ", tok->VocabSize(), " ids but the model only ", model->shape.vocab)));
  }
  SLOG(INFO) << "tokenizer: " << tok->Name() << " (" << tok->VocabSize() << " ids)";

  auto backend = PickBackend(f, model);
  if (!backend.ok()) return Fail(backend.status());
  std::string backend_name = (*backend)->Name();
  if (f.sampling == "host" || !(*backend)->SupportsDeviceSampling())
    SLOG(INFO) << "sampling: host" << (f.sampling == "host" ? " (--sampling host)" : " (the backend returns logits)");
  else
    SLOG(INFO) << "sampling: device (only token ids leave the " << backend_name << " backend)";

  ServerMetrics metrics;
  SchedulerOptions so;
  so.max_running = f.max_sessions;
  so.max_queued = f.max_queue;
  so.max_batch_tokens = f.max_batch_tokens;
  so.prefill_chunk = f.prefill_chunk;
  so.prefix_cache_bytes = static_cast<size_t>(f.prefix_cache_bytes);
  so.prefix_cache_min_tokens = f.prefix_cache_min_tokens;
  so.device_sampling = f.sampling == "device";
  so.max_stored_sessions = f.max_stored_sessions;
  so.stored_session_budget_bytes = static_cast<size_t>(f.session_memory_bytes);
  so.stored_session_idle_timeout = absl::Seconds(f.session_idle_timeout_s);
  so.session_dir = f.session_dir;
  so.session_host_budget_bytes = static_cast<size_t>(std::max(0LL, f.session_host_bytes));
  so.session_disk_budget_bytes = static_cast<size_t>(std::max(0LL, f.session_disk_bytes));
  so.max_snapshot_bytes = static_cast<size_t>(std::max(0LL, f.max_snapshot_bytes));
  so.testing_session_write_pause_ms = f.testing_session_write_pause_ms;
  so.testing_session_write_gate = f.testing_session_write_gate;
  signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the session write (EFBIG), not us
  Scheduler scheduler(std::move(*backend), tok.get(), so, &metrics);
  if (auto s = scheduler.OpenSessionDir(); !s.ok()) return Fail(s);

  ModelDescription desc;
  desc.id = name;
  desc.random_weights = random_weights;
  desc.description = random_weights ? "embedded RWKV-X with random weights (no trained model loaded)"
                     : embedded     ? "embedded byte-level RWKV-X demo model (~5M parameters, trained)"
                                    : "RWKV-X loaded from " + f.model.substr(f.model.find_last_of('/') + 1);
  desc.tokenizer = tok->Name();
  desc.backend = backend_name;
  desc.vocab = model->shape.vocab;
  desc.created_unix = absl::ToUnixSeconds(absl::Now());
  ServiceLimits lim;
  lim.max_prompt_tokens = f.max_prompt_tokens;
  lim.max_tokens = f.max_tokens;
  lim.default_max_tokens = f.default_max_tokens;
  lim.max_n = f.max_n;
  lim.request_timeout = absl::Seconds(f.request_timeout_s);
  lim.stream_buffer_bytes = static_cast<size_t>(f.stream_buffer_bytes);
  Service service(&scheduler, tok.get(), desc, lim);
  scheduler.Start();

  HttpOptions ho;
  ho.host = f.host;
  ho.port = f.http_port;
  ho.threads = f.http_threads;
  ho.max_body_bytes = static_cast<size_t>(f.max_body_bytes);
  ho.max_header_bytes = static_cast<size_t>(f.max_header_bytes);
  ho.max_json_depth = f.max_json_depth;
  ho.api_keys = &api_keys;
  ho.socket_send_buffer_bytes = f.http_send_buffer_bytes;
  ho.read_timeout = absl::Seconds(f.http_read_timeout_s);
  ho.idle_timeout = absl::Seconds(f.http_idle_timeout_s);
  ho.max_connections = f.http_max_connections;
  HttpServer http(&service, &metrics, ho);
  if (auto s = http.Start(); !s.ok()) return Fail(s);
  SLOG(INFO) << "HTTP listening on " << f.host << ":" << http.port();

  GrpcServer grpc(&service, &metrics, &api_keys);
  int grpc_port = -1;
  if (f.grpc_port >= 0) {
    auto p = grpc.Start(f.host, f.grpc_port);
    if (!p.ok()) return Fail(p.status());
    grpc_port = *p;
    SLOG(INFO) << "gRPC listening on " << f.host << ":" << grpc_port;
  }
  if (!f.port_file.empty()) {
    std::string tmp = f.port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << "{\"http_port\": " << http.port() << ", \"grpc_port\": " << grpc_port << "}\n";
    }
    std::rename(tmp.c_str(), f.port_file.c_str());
  }
  metrics.ready->Set(1);
  SLOG(INFO) << "ready: serving '" << name << "' on " << backend_name;

  int sig = 0;
  while ((sig = WaitSignal(-1)) == SIGHUP) reload_keys();
  SLOG(INFO) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining (grace "
             << f.drain_grace_s << "s); readiness is now false";
  scheduler.BeginDrain(absl::Seconds(f.drain_grace_s));
  grpc.SetNotServing();
  absl::Time until = absl::Now() + absl::Seconds(f.drain_grace_s) + absl::Seconds(5);
  while (!scheduler.WaitIdle(absl::Milliseconds(100)) && absl::Now() < until) {
    if (const int again = WaitSignal(0); again == SIGHUP) {
      reload_keys();
    } else if (again != 0) {
      SLOG(WARNING) << "second signal: ending running requests now";
      scheduler.BeginDrain(absl::ZeroDuration());
    }
  }
  SLOG(INFO) << "drained; stopping";
  scheduler.Stop();
  http.Stop();
  grpc.Stop();
  SLOG(INFO) << "stopped";
  return 0;
}

}  // namespace rwkvx
