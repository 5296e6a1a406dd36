#include "server/app/serve_flags.h"

#include <cctype>
#include <functional>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rwkvx {
namespace {

struct FlagDef {
  const char* name;
  const char* arg;  // "" for booleans
  const char* help;
  std::function<bool(ServeFlags*, const std::string&)> set;
  std::function<std::string(const ServeFlags&)> get;
};

template <typename T>
bool ParseNum(const std::string& s, T* out) {
  if constexpr (std::is_same_v<T, double>) return absl::SimpleAtod(s, out);
  else return absl::SimpleAtoi(s, out);
}

#define STR(field, name, help) \
  FlagDef{name, "STR", help, [](ServeFlags* f, const std::string& v) { f->field = v; return true; }, \
          [](const ServeFlags& f) { return f.field; }}
#define NUM(field, name, arg, help)                                                   \
  FlagDef{name, arg, help,                                                            \
          [](ServeFlags* f, const std::string& v) { return ParseNum(v, &f->field); }, \
          [](const ServeFlags& f) { return absl::StrCat(f.field); }}

const std::vector<FlagDef>& Defs() {
  static const std::vector<FlagDef> defs = {
      STR(model, "model", "checkpoint (.pth or .safetensors); empty = the embedded trained demo model"),
      STR(vocab, "vocab", "RWKV world vocabulary file (rwkv_vocab_v20230424.txt); implies --tokenizer world"),
      STR(tokenizer, "tokenizer", "auto | world | bytes (auto: world with --vocab, else bytes)"),
      STR(model_name, "model-name", "name served in /v1/models and expected in 'model' (default: derived)"),
      STR(backend, "backend", "auto | cpu | cuda (auto: CUDA when a GPU is usable, else CPU; logged)"),
      NUM(threads, "threads", "N", "CPU backend threads (0 = all cores)"),
      NUM(cuda_device, "cuda-device", "N", "GPU index for the CUDA backend"),
      STR(weights, "weights",
          "weight precision: CPU fp32 (default, exact) or fp16 (half the bytes per token); "
          "CUDA fp16 (default), bf16, fp8 or int8 (8-bit projections, E4M3 or int8 codes with per-row "
          "scales: ~0.6x the weight bytes, bounded error, experimental; docs/CUDA.md)"),
      STR(sampling, "sampling",
          "where generated tokens are sampled: auto (default: device where the backend samples, i.e. "
          "CUDA, else host; logged), host (every logits row is copied out) or device (inside the "
          "backend where it can: only token ids leave the GPU; docs/SAMPLING.md)"),
      NUM(cuda_split_mixed, "cuda-split-mixed", "0|1",
          "CUDA: run a step that mixes decoding sessions with prompt chunks as two sub-steps, the decode "
          "part replayed from a CUDA graph (1), or as one eager step (0, default); docs/CUDA.md"),
      NUM(cuda_wkv_chunked_min, "cuda-wkv-chunked-min", "N",
          "CUDA: prompt chunks of at least N tokens run the chunked wkv7 recurrence, shorter ones the "
          "sequential kernel (0 = the default, 256; docs/CUDA.md)"),
      NUM(cuda_free_state_blocks, "cuda-free-state-blocks", "N",
          "CUDA: freed sessions' state blocks kept for new sessions, so that a new session costs no "
          "cudaMalloc and no device synchronisation; their bytes come off the session budget at start, an "
          "eighth of it at most (-1 = auto, default: up to 32 blocks and 256 MiB; 0 = none; docs/MEMORY.md)"),
      NUM(cuda_skinny_mma, "cuda-skinny-mma", "0|1",
          "CUDA: steps of 5..16 rows (5..32 with 8-bit weights) run their projections on tensor cores in "
          "the skinny kernel (1, default) or in cuBLAS (0); docs/CUDA.md"),
      NUM(cuda_batch_invariant, "cuda-batch-invariant", "0|1",
          "CUDA (experimental): 1 makes a session's logits the same bits whatever else is in its steps and however its "
          "prompt is cut into calls (fixed-order kernels for every row count; slower, chiefly prefill), and "
          "lets the prefix cache serve checkpoints at any token below the model's split-invariant length; "
          "0 (default): the fastest kernel for each step; docs/BATCH_INVARIANCE.md"),
      NUM(cuda_graph_buckets, "cuda-graph-buckets", "0|1",
          "CUDA: pad decode steps to a few bucketed batch sizes so that their CUDA graphs are captured "
          "once (1, default; at most 12.5% extra rows), or one graph per batch size (0); docs/CUDA.md"),
      NUM(cuda_warmup, "cuda-warmup", "0|1",
          "CUDA: before serving, run throw-away steps (a prefill of --max-batch-tokens tokens, decode steps "
          "of 1, 2, 4, ... --max-sessions sessions) so that lazily loaded kernels, cuBLAS choices and decode "
          "graphs are ready before the first request (1, default), or not (0); docs/CUDA.md"),
      STR(stream_writer, "stream-writer",
          "auto | on | off: decode and push the streamed text of requests without stop strings on the "
          "stream notifier's thread instead of the scheduler's (auto, default: on with >= 4 hardware "
          "threads, logged; docs/SERVER.md)"),
      NUM(overlap_steps, "overlap-steps", "0|1",
          "take each step's results only after the loop's other host work (stream wake-ups, gauges, "
          "checks for endings and room), so that this work overlaps the GPU's step (1, default), or wait "
          "for every step as soon as it is launched (0); the CPU backend computes the whole step when it is "
          "launched, so there it changes nothing; docs/SERVER.md"),
      NUM(gpu_memory_fraction, "gpu-memory-fraction", "F",
          "share of the GPU's memory the CUDA backend may use (weights, sessions, workspace)"),
      NUM(embedded_seed, "embedded-seed", "N", "with no --model: serve a random-weight model with this seed instead of the trained demo model (-1 = the demo model)"),
      STR(host, "host", "address to listen on (HTTP and gRPC)"),
      NUM(http_port, "http-port", "PORT", "HTTP port (0 = pick a free port and log it)"),
      NUM(grpc_port, "grpc-port", "PORT", "gRPC port (0 = pick a free port, -1 = no gRPC)"),
      STR(port_file, "port-file", "write {\"http_port\":..,\"grpc_port\":..} here once listening"),
      FlagDef{"api-key", "KEY", "API key for Bearer auth on /v1/*, /tokenize, /detokenize and gRPC (repeatable; none = no auth)",
              [](ServeFlags* f, const std::string& v) { f->api_keys.push_back(v); return true; },
              [](const ServeFlags& f) { return std::string(f.api_keys.empty() ? "" : "(set)"); }},
      FlagDef{"initial-state", "NAME=PATH",
              "a state-tuned initial RWKV state (RWKV-PEFT layout: blocks.N.att.time_state [H, N, N], .pth or "
              ".safetensors) that requests pick with \"initial_state\": \"NAME\"; repeatable (docs/API.md)",
              [](ServeFlags* f, const std::string& v) { f->initial_states.push_back(v); return true; },
              [](const ServeFlags& f) { return absl::StrJoin(f.initial_states, ","); }},
      STR(api_key_file, "api-key-file", "file with one API key per line (SIGHUP re-reads it: key rotation without a restart)"),
      NUM(http_threads, "http-threads", "N", "HTTP I/O threads"),
      NUM(http_send_buffer_bytes, "http-send-buffer-bytes", "N", "kernel send buffer per HTTP connection (0 = OS default)"),
      NUM(http_read_timeout_s, "http-read-timeout", "SECONDS", "an HTTP request's headers and body must arrive within this of its first byte (slow senders are dropped)"),
      NUM(http_idle_timeout_s, "http-idle-timeout", "SECONDS", "an HTTP connection waits this long for a request's first byte, then is closed"),
      NUM(http_max_connections, "http-max-connections", "N", "open HTTP connections; more get 503 and are closed"),
      STR(allowed_origins, "allowed-origins",
          "CORS: comma-separated browser origins (https://app.example.com) whose pages may call the HTTP API, "
          "or * for any; empty = no CORS headers (docs/SERVER.md)"),
      NUM(max_sessions, "max-sessions", "N", "max concurrent generating sessions"),
      NUM(max_queue, "max-queue", "N", "max waiting requests; more get 429 / RESOURCE_EXHAUSTED"),
      NUM(max_prompt_tokens, "max-prompt-tokens", "N",
          "max prompt tokens per request, and per session create/append (0 = the model's declared "
          "context, sidecar ctx_len, else 131072; the start-up log says which is in force)"),
      NUM(max_tokens, "max-tokens", "N", "max generated tokens per request (upper bound of max_tokens)"),
      NUM(default_max_tokens, "default-max-tokens", "N", "max_tokens when the request gives none"),
      NUM(max_batch_tokens, "max-batch-tokens", "N",
          "tokens per backend step, decode + prompt chunks (0 = auto, default: 4096 on the CUDA backend, "
          "512 on the CPU one; logged; docs/SERVER.md)"),
      NUM(prefill_chunk, "prefill-chunk", "N", "prompt tokens per session per step (chunked prefill)"),
      NUM(prefill_interval, "prefill-interval", "N",
          "while sessions are decoding, prompt chunks join a step only every N steps (the steps between "
          "are pure decode, replayed from CUDA graphs on the GPU; a new request's first token waits up to "
          "N-1 steps longer); 1 (default) = every step"),
      NUM(request_timeout_s, "request-timeout", "SECONDS", "deadline of one request, queue time included"),
      NUM(max_body_bytes, "max-body-bytes", "N",
          "max HTTP request body (413 past it; 0 = 8 bytes per prompt token, at least 1 MiB: "
          "1 MiB for 131072 tokens, which holds them as JSON ids or as text of up to ~8 bytes a "
          "token; session snapshot uploads have their own limit, --max-snapshot-bytes)"),
      NUM(max_header_bytes, "max-header-bytes", "N", "max HTTP request headers (431 past it)"),
      NUM(max_json_depth, "max-json-depth", "N", "max nesting of a JSON body"),
      NUM(stream_buffer_bytes, "stream-buffer-bytes", "N", "per-request buffer of unread events; a client slower than this is dropped"),
      NUM(max_n, "max-n", "N", "max choices (n) per request"),
      NUM(memory_budget_bytes, "memory-budget-bytes", "N",
          "backend session memory budget (0 = unbounded on the CPU, the --gpu-memory-fraction alone on CUDA; on CUDA "
          "it caps session bytes within that fraction): requests start only when their reservation (prompt + "
          "max_tokens, compression cap applied) fits, never-fitting ones get 429 before any byte; running ones "
          "are preempted, never failed, when sessions outgrow it (docs/MEMORY.md)"),
      NUM(prefix_cache_bytes, "prefix-cache-bytes", "N",
          "prefix state cache: bytes of checkpointed prompt states that later requests extending the same "
          "tokens start from (multi-turn chat prefills only the new turn; docs/PREFIX_CACHE.md); 0 = off; "
          "default (-1): a quarter of the backend's session memory, 1 GiB on a CPU without --memory-budget-bytes"),
      NUM(prefix_cache_min_tokens, "prefix-cache-min-tokens", "N", "shortest token prefix the prefix cache checkpoints"),
      NUM(max_stored_sessions, "max-stored-sessions", "N", "max named sessions (all tiers)"),
      NUM(session_memory_bytes, "session-memory-bytes", "N", "backend-memory budget of named sessions; idle ones past it move to host memory"),
      NUM(session_idle_timeout_s, "session-idle-timeout", "SECONDS", "named sessions idle this long are deleted (with --session-dir: moved to disk)"),
      STR(session_dir, "session-dir", "directory of saved sessions: idle sessions spill here, all are saved on SIGTERM and listed again after a restart (empty = none)"),
      NUM(session_host_bytes, "session-host-bytes", "N", "host-memory budget of idle named sessions kept as snapshot bytes (past it they go to --session-dir)"),
      NUM(session_disk_bytes, "session-disk-bytes", "N", "disk budget of --session-dir (past it new sessions get 429 / RESOURCE_EXHAUSTED)"),
      NUM(session_lease_s, "session-lease-seconds", "SECONDS", "replicas sharing --session-dir: a session in a replica's memory is leased to it; a crashed replica's sessions are served elsewhere this long after its last renewal"),
      NUM(max_snapshot_bytes, "max-snapshot-bytes", "N", "largest session snapshot a client may upload (HTTP body, gRPC message)"),
      NUM(testing.session_write_pause_ms, "testing-session-write-pause-ms", "MS", "TEST ONLY: pause mid-way through every session file write (crash tests)"),
      STR(testing.session_write_gate, "testing-session-write-gate", "TEST ONLY: while this file exists, every session file write waits half-way"),
      NUM(testing.fail_step_after, "testing-fail-step-after", "N",
          "TEST ONLY: the Nth backend step run with every --max-sessions slot busy fails as a lost device "
          "(not ready, requests end 503 / UNAVAILABLE, sessions saved, exit 3)"),
      STR(testing.replica_host, "testing-replica-host", "TEST ONLY: the host name this replica's session leases give"),
      NUM(drain_grace_s, "drain-grace", "SECONDS", "on SIGTERM: time running requests get to finish"),
      NUM(attn_chunk_size, "attn-chunk-size", "N", "sparse attention chunk size B (-1 = model's)"),
      NUM(attn_topk, "attn-topk", "N", "sparse attention top-k chunks (-1 = model's)"),
      NUM(attn_full_threshold, "attn-full-threshold", "N", "full-attention threshold (-1 = chunk*topk, -2 = model's)"),
      STR(attn_decode_mode, "attn-decode-mode", "sparse | full (empty = model's)"),
      STR(attn_prefill_mode, "attn-prefill-mode", "chunk | full (empty = model's)"),
      NUM(kv_max, "kv-max", "N", "KV cache size that triggers compression (0 = never; -1 = model's)"),
      NUM(kv_window, "kv-window", "N", "KV rows always kept after compression (-1 = model's)"),
      NUM(kv_min, "kv-min", "N", "KV rows kept by compression (-1 = model's)"),
      STR(attn_reference, "attn-reference", "0.1 | 0.2: which official package generation's rules (empty = model's)"),
  };
  return defs;
}

// The environment variable of a flag: --http-port -> RWKVX_FLAG_HTTP_PORT.
std::string EnvName(const std::string& flag) {
  std::string out = "RWKVX_FLAG_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string ServeHelp() {
  std::string out =
      "usage: rwkvx serve [flags]\n\n"
      "Serves an RWKV-X model over gRPC (rwkvx.v1) and an OpenAI-compatible HTTP API.\n"
      "With no --model it serves a small embedded byte-level model (trained; see server/embedded/MODEL_CARD.md).\n\n";
  ServeFlags defaults;
  for (const auto& d : Defs()) {
    std::string left = absl::StrCat("  --", d.name, *d.arg ? absl::StrCat(" ", d.arg) : "");
    if (left.size() < 32) left.resize(32, ' ');
    else left += "\n" + std::string(32, ' ');
    std::string def = d.get(defaults);
    absl::StrAppend(&out, left, d.help, def.empty() ? "" : absl::StrCat(" [", def, "]"), "\n");
  }
  out += "  --help                        this text\n\n"
         "Every flag may also come from the environment as RWKVX_FLAG_<FLAG> (upper case, '-' as '_': "
         "RWKVX_FLAG_HTTP_PORT=8080; an empty value counts as not set); a flag on the command line wins. An "
         "RWKVX_FLAG_ variable that names no flag is an error.\n";
  return out;
}

absl::Status ParseServeFlags(int argc, char** argv, ServeFlags* f, char** envp) {
  constexpr std::string_view kPrefix = "RWKVX_FLAG_";
  for (char** e = envp; e && *e; ++e) {
    const std::string_view kv(*e);
    if (kv.substr(0, kPrefix.size()) != kPrefix) continue;
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string name(kv.substr(0, eq)), value(kv.substr(eq + 1));
    if (value.empty()) continue;  // set but empty: not given (as deploy/ leaves optional ones)
    const FlagDef* def = nullptr;
    for (const auto& d : Defs()) {
      if (EnvName(d.name) == name) def = &d;
    }
    if (!def) return absl::InvalidArgumentError("unknown environment variable " + name + " (it names no flag; see --help)");
    if (!def->set(f, value)) {
      return absl::InvalidArgumentError(name + " (--" + def->name + "): bad value '" + value.substr(0, 200) + "'");
    }
    f->from_env.push_back(absl::StrCat("--", def->name));
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      f->help = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument: " + a);
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    const FlagDef* def = nullptr;
    for (const auto& d : Defs()) {
      if (name == d.name) def = &d;
    }
    if (!def) return absl::InvalidArgumentError("unknown flag --" + name + " (see --help)");
    if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError("--" + name + " needs a value");
      value = argv[++i];
    }
    if (!def->set(f, value)) {
      return absl::InvalidArgumentError("--" + name + ": bad value '" + value + "'");
    }
  }
  return absl::OkStatus();
}

}  // namespace rwkvx
