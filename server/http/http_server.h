// The HTTP frontend (Boost.Beast, async): OpenAI-compatible /v1/completions and
// /v1/chat/completions (streaming via SSE and not), /v1/models, the session API
// (/v1/sessions..., /v1/snapshot/completions), /health (liveness), /ready (readiness),
// /metrics (Prometheus text). Bearer API keys on /v1/*. The routes and their methods are
// one table (http_connection.cc): a known path with another method gets 405 + Allow.
//
// Threads: Start()/Stop() are called by the owner (ServeMain) on one thread. The server
// runs `threads` io_context threads; each connection lives on its own strand. Generation
// events arrive from the scheduler loop through RequestStream's notify, which only posts
// to the connection's strand: the scheduler never waits on a socket. A connection pops
// events only when its previous write finished, so a slow reader's backlog stays inside
// its RequestStream's bounded buffer (overflow ends that request, not the engine).
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "server/http/http_options.h"
#include "server/metrics/metrics.h"
#include "server/service/service.h"

namespace rwkvx {

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
