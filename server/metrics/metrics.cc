#include "server/metrics/metrics.h"

#include "prometheus/text_serializer.h"

namespace rwkvx {
namespace {

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}
prometheus::Histogram::BucketBoundaries SizeBuckets() {
  return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
}

prometheus::Histogram* Hist(prometheus::Registry& r, const char* name, const char* help,
                            prometheus::Histogram::BucketBoundaries b) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
}
prometheus::Gauge* Gauge(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}
prometheus::Counter* Counter(prometheus::Registry& r, const char* name, const char* help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

ServerMetrics::ServerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  time_to_first_token = Hist(r, "rwkvx_time_to_first_token_seconds",
                             "Time from arrival to the first generated token.", LatencyBuckets());
  inter_token_latency = Hist(r, "rwkvx_inter_token_latency_seconds",
                             "Time between consecutive generated tokens of a request.",
                             LatencyBuckets());
  request_latency = Hist(r, "rwkvx_request_duration_seconds",
                         "End-to-end request time, arrival to final event.", LatencyBuckets());
  queue_time = Hist(r, "rwkvx_queue_time_seconds",
                    "Time a request waited before admission.", LatencyBuckets());
  step_duration = Hist(r, "rwkvx_step_duration_seconds", "Duration of one backend step.",
                       LatencyBuckets());
  step_batch_sessions = Hist(r, "rwkvx_step_batch_sessions",
                             "Sessions in one backend step.", SizeBuckets());
  step_batch_tokens = Hist(r, "rwkvx_step_batch_tokens",
                           "Tokens (prefill + decode) in one backend step.", SizeBuckets());
  requests_running = Gauge(r, "rwkvx_requests_running", "Requests admitted and generating.");
  requests_waiting = Gauge(r, "rwkvx_requests_waiting", "Requests waiting for admission.");
  sessions_active = Gauge(r, "rwkvx_sessions_active",
                          "Live backend sessions (running requests plus stored sessions).");
  sessions_stored = Gauge(r, "rwkvx_sessions_stored", "Named sessions stored between calls.");
  sessions_host = Gauge(r, "rwkvx_sessions_host", "Named sessions kept in host memory as snapshot bytes.");
  sessions_disk = Gauge(r, "rwkvx_sessions_disk", "Named sessions kept only in --session-dir.");
  session_host_bytes = Gauge(r, "rwkvx_session_host_bytes", "Snapshot bytes of named sessions in host memory.");
  session_disk_bytes = Gauge(r, "rwkvx_session_disk_bytes", "Bytes of the session files in --session-dir.");
  session_saves_in_flight = Gauge(r, "rwkvx_session_saves_in_flight",
                                  "Background saves of idle named sessions to --session-dir in progress.");
  session_state_bytes = Gauge(r, "rwkvx_session_state_bytes",
                              "Bytes held by all live sessions (recurrent state + sparse KV).");
  backend_device_bytes = Gauge(r, "rwkvx_backend_device_bytes",
                               "Device memory the backend allocated besides the weights: session state blocks, KV page "
                               "slabs (pages in use or free), step workspace, scratch, stream-ordered pool (0 on the CPU).");
  backend_graphs = Gauge(r, "rwkvx_backend_graphs", "CUDA graphs the backend holds for decode steps (0 on the CPU).");
  sparse_kv_tokens = Gauge(r, "rwkvx_sparse_kv_tokens",
                           "Tokens cached in sparse-attention KV stores of all live sessions.");
  ready = Gauge(r, "rwkvx_ready", "1 when the server admits new requests, else 0.");
  prompt_tokens = Counter(r, "rwkvx_prompt_tokens_total", "Prompt tokens prefilled.");
  generation_tokens = Counter(r, "rwkvx_generation_tokens_total", "Tokens generated.");
  steps = Counter(r, "rwkvx_steps_total", "Backend steps run.");
  preemptions = Counter(r, "rwkvx_preemptions_total",
                        "Running requests parked in host memory because sessions outgrew the backend's memory; "
                        "each resumes exactly where it stopped.");
  session_handoffs = Counter(r, "rwkvx_session_handoffs_total",
                             "Named sessions this replica saved and let go because another replica sharing "
                             "--session-dir was asked for them (docs/SESSIONS.md, \"Replicas\").");
  requests_finished = &prometheus::BuildCounter()
                           .Name("rwkvx_requests_finished_total")
                           .Help("Finished requests by finish reason.")
                           .Register(r);
  auto& sched = prometheus::BuildCounter()
                    .Name("rwkvx_scheduler_seconds_total")
                    .Help("Busy seconds of the scheduler thread by phase: plan (batch planning and the step's "
                          "inputs), backend (the backend step), results (tokens applied and queued to the "
                          "streams), other (admission, commands, bookkeeping). Idle waits are not counted.")
                    .Register(r);
  sched_plan_seconds = &sched.Add({{"phase", "plan"}});
  sched_backend_seconds = &sched.Add({{"phase", "backend"}});
  sched_results_seconds = &sched.Add({{"phase", "results"}});
  sched_other_seconds = &sched.Add({{"phase", "other"}});
  auto& sched_cpu = prometheus::BuildCounter()
                        .Name("rwkvx_scheduler_cpu_seconds_total")
                        .Help("CPU seconds of the scheduler thread by phase (as rwkvx_scheduler_seconds_total; "
                              "less than those where the thread waited for a lock or a core; backend includes "
                              "the CUDA driver's spin while it waits for a step).")
                        .Register(r);
  const char* phases[4] = {"plan", "backend", "results", "other"};
  for (int i = 0; i < 4; ++i) sched_cpu_seconds[i] = &sched_cpu.Add({{"phase", phases[i]}});
  auto& kinds = prometheus::BuildCounter()
                    .Name("rwkvx_steps_by_kind_total")
                    .Help("Backend steps by kind: decode (one token per session), mixed (decodes and prompt "
                          "chunks), prefill (prompt chunks only).")
                    .Register(r);
  auto& kind_s = prometheus::BuildCounter()
                     .Name("rwkvx_step_seconds_total")
                     .Help("Seconds of backend steps by kind (as rwkvx_steps_by_kind_total).")
                     .Register(r);
  const char* kind_names[3] = {"decode", "mixed", "prefill"};
  for (int i = 0; i < 3; ++i) {
    steps_kind[i] = &kinds.Add({{"kind", kind_names[i]}});
    step_kind_seconds[i] = &kind_s.Add({{"kind", kind_names[i]}});
  }
  requests_rejected = &prometheus::BuildCounter()
                           .Name("rwkvx_requests_rejected_total")
                           .Help("Requests refused before admission, by reason.")
                           .Register(r);
  http_requests = &prometheus::BuildCounter()
                       .Name("rwkvx_http_requests_total")
                       .Help("HTTP requests by path and status code.")
                       .Register(r);
  grpc_requests = &prometheus::BuildCounter()
                       .Name("rwkvx_grpc_requests_total")
                       .Help("gRPC calls by method and status code.")
                       .Register(r);
  // Pre-create the common finish reasons so that they show as 0 from the start.
  for (const char* f : {"stop", "length", "cancelled", "timeout", "shutdown", "slow_client",
                        "error"}) {
    Finished(f);
  }
  Rejected("queue_full");
  prefix_cache_hits = Counter(r, "rwkvx_prefix_cache_hits_total",
                              "Requests that started from a prefix-cache checkpoint.");
  prefix_cache_misses = Counter(r, "rwkvx_prefix_cache_misses_total",
                                "Requests that found no usable prefix-cache checkpoint.");
  prefix_cache_saved_tokens = Counter(r, "rwkvx_prefix_cache_saved_tokens_total",
                                      "Prompt tokens served from the prefix cache, not prefilled.");
  prefix_cache_inserts = Counter(r, "rwkvx_prefix_cache_inserts_total",
                                 "Checkpoints added to the prefix cache.");
  prefix_cache_evictions = Counter(r, "rwkvx_prefix_cache_evictions_total",
                                   "Checkpoints evicted from the prefix cache (LRU, budget).");
  prefix_cache_bytes = Gauge(r, "rwkvx_prefix_cache_bytes",
                             "Bytes of prefix-cache checkpoints (as charged to the budget).");
  prefix_cache_entries = Gauge(r, "rwkvx_prefix_cache_entries", "Prefix-cache checkpoints held.");
}

std::string ServerMetrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace rwkvx
