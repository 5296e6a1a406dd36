// rwkvx.v1.Inference/AppendSessionStream: a ServerWriteReactor that writes an append's
// progress (one AppendProgress per prefill chunk, coalesced while a write is in flight)
// and then the session. A cancelled call cancels the append between chunks
// (AppendControl, server/session_append.h). Internal to server/grpc/.
//
// Ownership and threads: gRPC owns the reactor from the handler's return until OnDone,
// which deletes it. Its state is under Link::mu, shared (shared_ptr) with the append's
// progress callback and the Service's completion, both on the scheduler's loop thread (or
// the caller's, for an append refused at once); OnDone clears the link under that lock,
// so a late callback finds no reactor.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/grpc/grpc_reactor_link.h"
#include "rwkvx/v1/inference.pb.h"
#include "server/metrics/metrics.h"
#include "server/service/service.h"

namespace rwkvx {

class AppendReactor : public grpc::ServerWriteReactor<::rwkvx::v1::AppendProgress> {
 public:
  explicit AppendReactor(ServerMetrics* metrics);
  // gRPC's callbacks: a write went out, the client cancelled, the call is over.
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // Starts the append (once, from the handler). After it the reactor may be deleted.
  void Start(Service* svc, std::string name, PromptInput prompt);
  // Ends the call with `st` instead (e.g. a failed key check).
  void Fail(const absl::Status& st);

 private:
  using Link = ReactorLink<AppendReactor>;
  static void OnProgress(const std::shared_ptr<Link>& link, int64_t fed, int64_t total);
  static void OnEnd(const std::shared_ptr<Link>& link, absl::StatusOr<StoredSessionInfo> r);
  void WriteLocked();                          // under link_->mu
  void FinishLocked(const grpc::Status& gs);  // under link_->mu

  ServerMetrics* metrics_;
  std::shared_ptr<Link> link_;
  std::shared_ptr<AppendControl> control_;
  // Under link_->mu.
  ::rwkvx::v1::AppendProgress out_;   // being written
  ::rwkvx::v1::AppendProgress next_;  // the latest progress not yet written
  bool has_next_ = false;
  bool writing_ = false;
  bool finished_ = false;
  std::optional<absl::StatusOr<StoredSessionInfo>> end_;  // the append's end, once known
};

}  // namespace rwkvx
