// The gRPC frontend: rwkvx.v1.Inference (callback API; Generate streams through a
// ServerWriteReactor), plus grpc.health.v1.Health (the default health service: SERVING
// until drain) and server reflection.
//
// Threads: Start/SetNotServing/Stop from the owner's thread. RPC handlers run on gRPC's
// threads; Generate's reactor is also driven by the scheduler's notify (it only starts
// a write under the reactor's lock, never blocks). Stop() after the scheduler stopped.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/api_keys.h"
#include "server/metrics/metrics.h"
#include "server/service/service.h"

namespace rwkvx {

class GrpcServer {
 public:
  // `api_keys`: null or empty = no auth; must outlive the server.
  GrpcServer(Service* service, ServerMetrics* metrics, const ApiKeys* api_keys);
  ~GrpcServer();
  // Returns the bound port (port 0 = a free one).
  absl::StatusOr<int> Start(const std::string& host, int port);
  void SetNotServing();
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwkvx
