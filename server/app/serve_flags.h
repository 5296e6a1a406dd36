// Flags of `rwkvx serve` (parsed by hand: one table, --help generated from it).
// Plain values, parsed once on the main thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rwkvx {

// Fault injection for tests only (the --testing-* flags); never set in production.
struct ServeTestingFlags {
  int session_write_pause_ms = 0;  // pause mid-way through every session file write
  std::string session_write_gate;  // every session file write waits while this file exists
  int fail_step_after = 0;         // the Nth step with every slot busy fails as a lost backend
  std::string replica_host;        // the host name in session leases (replicas as on many hosts)
};

// The prompt cap when neither --max-prompt-tokens nor the model's sidecar (ctx_len) sets
// one, and the HTTP body bytes allowed per token of it when --max-body-bytes is not given
// (131072 x 8 = 1 MiB: the ids of a full prompt as JSON, or its text at up to ~8 bytes a
// token; docs/SERVER.md).
inline constexpr int kDefaultPromptCap = 131072;
inline constexpr long long kBodyBytesPerPromptToken = 8;

struct ServeFlags {
  // Model and engine.
  std::string model;               // checkpoint path; "" = the embedded demo model
  std::string vocab;               // world vocabulary file (rwkv_vocab_v20230424.txt)
  std::string tokenizer = "auto";  // auto | world | bytes
  std::string model_name;          // served name; "" = derived
  std::string backend = "auto";    // auto | cpu | cuda
  int threads = 0;                 // CPU backend threads (0 = all cores)
  int cuda_device = 0;
  std::string weights;             // "" | fp32 | fp16 | bf16 | fp8 | int8 (see --weights)
  double gpu_memory_fraction = 0.9;
  int cuda_split_mixed = 0;
  int cuda_wkv_chunked_min = 0;  // 0 = CudaBackendOptions' default
  int cuda_free_state_blocks = -1;  // -1 = CudaBackendOptions' default (auto)
  int cuda_graph_buckets = 1;
  int cuda_skinny_mma = 1;         // --cuda-skinny-mma 0|1
  int cuda_batch_invariant = 0;    // --cuda-batch-invariant 0|1
  int cuda_warmup = 1;             // WarmUp (engine/warmup.h) before serving, CUDA only
  std::string stream_writer = "auto";  // auto | on | off (SchedulerOptions::stream_writer)
  int overlap_steps = 1;               // 0 | 1 (SchedulerOptions::overlap_steps)
  long long embedded_seed = -1;    // >= 0 (no --model): random weights with this seed
  // Network.
  std::string host = "127.0.0.1";
  int http_port = 8080;
  int grpc_port = 50051;  // -1 = no gRPC
  std::string port_file;
  std::vector<std::string> api_keys;
  std::vector<std::string> initial_states;  // NAME=PATH (--initial-state, repeatable)
  std::string api_key_file;
  int http_threads = 2;
  int http_send_buffer_bytes = 0;
  double http_read_timeout_s = 30;   // a request's headers + body, from its first byte
  double http_idle_timeout_s = 120;  // keep-alive wait for a request's first byte
  int http_max_connections = 8192;
  std::string allowed_origins;     // CORS: comma-separated origins or "*" ("" = off)
  // Limits.
  int max_sessions = 64;
  int max_queue = 256;
  int max_prompt_tokens = 0;  // 0 = the model's declared context, else kDefaultPromptCap
  int max_tokens = 4096;
  int default_max_tokens = 256;
  int max_batch_tokens = 0;  // 0 = auto (ResolveBatchTokens: by backend)
  int prefill_chunk = 128;
  int prefill_interval = 1;
  double request_timeout_s = 600;
  long long max_body_bytes = 0;  // 0 = kBodyBytesPerPromptToken per prompt token, >= 1 MiB
  long long max_header_bytes = 16 << 10;
  int max_json_depth = 64;
  long long stream_buffer_bytes = 1 << 20;
  int max_n = 8;
  long long memory_budget_bytes = 0;  // backend session memory (0 = unbounded)
  // Prefix state cache (docs/PREFIX_CACHE.md).
  // -1 = auto (ApplyPrefixCacheDefault: a quarter of the backend's session memory, 1 GiB on
  // a CPU without a budget); 0 = off.
  long long prefix_cache_bytes = -1;
  int prefix_cache_min_tokens = 16;
  std::string sampling = "auto";  // auto | host | device (docs/SAMPLING.md)
  // Stored sessions (gRPC).
  int max_stored_sessions = 256;
  long long session_memory_bytes = 1LL << 30;
  double session_idle_timeout_s = 600;
  std::string session_dir;                     // "" = sessions do not survive a restart
  long long session_host_bytes = 4LL << 30;    // idle sessions as snapshot bytes in RAM
  long long session_disk_bytes = 64LL << 30;   // saved sessions in --session-dir
  double session_lease_s = 30;                 // replicas sharing --session-dir
  long long max_snapshot_bytes = 1LL << 30;    // largest uploaded snapshot (HTTP, gRPC)
  // Shutdown.
  double drain_grace_s = 30;
  // Sparse attention (-1 / "" = the model's value).
  int attn_chunk_size = -1;
  int attn_topk = -1;
  int attn_full_threshold = -2;  // -2 = keep; -1 = chunk*topk
  std::string attn_decode_mode;   // sparse | full
  std::string attn_prefill_mode;  // chunk | full
  int kv_max = -1, kv_window = -1, kv_min = -1;
  std::string attn_reference;     // 0.1 | 0.2

  ServeTestingFlags testing;  // --testing-*

  bool help = false;
  std::vector<std::string> from_env;  // the flags set by RWKVX_FLAG_* variables (for the log)
};

// Parses the environment's RWKVX_FLAG_<FLAG> variables (--http-port: RWKVX_FLAG_HTTP_PORT;
// what a container sets), then argv (after the subcommand name), which wins. InvalidArgument
// names the bad flag or variable; an RWKVX_FLAG_ variable that names no flag is an error.
// `envp`: the environment (null-terminated "NAME=value" strings; null = none).
absl::Status ParseServeFlags(int argc, char** argv, ServeFlags* f, char** envp = nullptr);
std::string ServeHelp();

}  // namespace rwkvx
