// The HTTP frontend (Boost.Beast, async): OpenAI-compatible /v1/completions and
// /v1/chat/completions (streaming via SSE and not), /v1/models, /health (liveness),
// /ready (readiness), /metrics (Prometheus text). Bearer API keys on /v1/*.
//
// Threads: Start()/Stop() are called by the owner (ServeMain) on one thread. The server
// runs `threads` io_context threads; each connection lives on its own strand. Generation
// events arrive from the scheduler loop through RequestStream's notify, which only posts
// to the connection's strand: the scheduler never waits on a socket. A connection pops
// events only when its previous write finished, so a slow reader's backlog stays inside
// its RequestStream's bounded buffer (overflow ends that request, not the engine).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/api_keys.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/metrics.h"
#include "server/service.h"

namespace rwkvx {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = pick a free port (read it back with port())
  int threads = 2;
  size_t max_body_bytes = size_t{1} << 20;
  size_t max_header_bytes = 16 << 10;
  int max_json_depth = 64;
  const ApiKeys* api_keys = nullptr;  // null or no keys = no auth; must outlive the server
  int socket_send_buffer_bytes = 0;   // SO_SNDBUF of accepted sockets (0 = OS default)
  // A request's headers and body must arrive within read_timeout of its first byte (a
  // slowloris sender is dropped); a connection may wait idle_timeout for that first byte.
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Seconds(120);
  // Open connections; past it a new connection gets 503 and is closed at once.
  int max_connections = 8192;
};

class HttpServer {
 public:
  HttpServer(Service* service, ServerMetrics* metrics, HttpOptions opts);
  ~HttpServer();
  absl::Status Start();  // binds and starts the threads
  int port() const { return port_; }
  // Closes the listener and every connection, joins the threads.
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace rwkvx
