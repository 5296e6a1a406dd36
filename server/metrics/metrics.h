// Prometheus metrics of the server (prometheus-cpp core registry; served as text by the
// HTTP frontend at /metrics with prometheus::TextSerializer, never by civetweb).
// Every metric object is thread-safe (prometheus-cpp's atomics); the struct itself is
// created once at startup, owned by ServeMain, and outlives the scheduler and frontends.
#pragma once

#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace rwkvx {

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // The exposition text (Prometheus text format 0.0.4).
  std::string Serialize() const;
  prometheus::Registry& registry() { return *registry_; }

  // Latency histograms (seconds).
  prometheus::Histogram* time_to_first_token;
  prometheus::Histogram* inter_token_latency;
  prometheus::Histogram* request_latency;  // end to end, admission to final event
  prometheus::Histogram* queue_time;
  prometheus::Histogram* step_duration;
  // Step batch size histograms.
  prometheus::Histogram* step_batch_sessions;
  prometheus::Histogram* step_batch_tokens;

  // Gauges.
  prometheus::Gauge* requests_running;
  prometheus::Gauge* requests_waiting;
  prometheus::Gauge* sessions_active;        // live backend sessions (running + stored)
  prometheus::Gauge* sessions_stored;        // named (gRPC) sessions parked between calls
  prometheus::Gauge* session_state_bytes;    // bytes of all live sessions' state + KV
  // Stored sessions outside the backend (docs/SESSIONS.md): count and bytes per tier.
  prometheus::Gauge* sessions_host;
  prometheus::Gauge* sessions_disk;
  prometheus::Gauge* session_host_bytes;
  prometheus::Gauge* session_disk_bytes;
  prometheus::Gauge* session_saves_in_flight;  // background saves to --session-dir running
  prometheus::Gauge* backend_device_bytes;   // MemoryInfo::device_bytes
  prometheus::Gauge* backend_graphs;         // MemoryInfo::graphs
  prometheus::Gauge* sparse_kv_tokens;       // cached KV tokens over all live sessions
  prometheus::Gauge* ready;                  // 1 when accepting requests

  // Counters.
  prometheus::Counter* prompt_tokens;
  prometheus::Counter* generation_tokens;
  prometheus::Counter* steps;
  prometheus::Counter* preemptions;  // running requests parked to host memory for memory
  prometheus::Counter* session_handoffs;  // named sessions saved and let go on another replica's request
  prometheus::Family<prometheus::Counter>* requests_finished;  // label finish_reason
  prometheus::Family<prometheus::Counter>* requests_rejected;  // label reason
  prometheus::Family<prometheus::Counter>* http_requests;      // labels path, code
  prometheus::Family<prometheus::Counter>* grpc_requests;      // labels method, code
  // rwkvx_scheduler_seconds_total by phase: the scheduler thread's busy time.
  prometheus::Counter* sched_plan_seconds;
  prometheus::Counter* sched_backend_seconds;
  prometheus::Counter* sched_results_seconds;
  prometheus::Counter* sched_other_seconds;
  // The same phases in the scheduler thread's CPU time (CLOCK_THREAD_CPUTIME_ID): below
  // the busy seconds when the thread waits for a lock or for a core.
  prometheus::Counter* sched_cpu_seconds[4];  // plan, backend, results, other
  // Backend steps by kind: decode (one token per session), mixed (decodes and prompt
  // chunks), prefill (prompt chunks only); count and seconds.
  prometheus::Counter* steps_kind[3];
  prometheus::Counter* step_kind_seconds[3];

  // Prefix state cache (server/prefix_cache/prefix_cache.h, docs/PREFIX_CACHE.md).
  prometheus::Counter* prefix_cache_hits;
  prometheus::Counter* prefix_cache_misses;
  prometheus::Counter* prefix_cache_saved_tokens;  // prompt tokens not prefilled thanks to hits
  prometheus::Counter* prefix_cache_inserts;
  prometheus::Counter* prefix_cache_evictions;
  prometheus::Gauge* prefix_cache_bytes;           // bytes charged to --prefix-cache-bytes
  prometheus::Gauge* prefix_cache_entries;         // checkpoints held

  prometheus::Counter& Finished(const std::string& reason) {
    return requests_finished->Add({{"finish_reason", reason}});
  }
  prometheus::Counter& Rejected(const std::string& reason) {
    return requests_rejected->Add({{"reason", reason}});
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace rwkvx
