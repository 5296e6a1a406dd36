// The streaming side of rwkvx.v1.Inference/Generate and /Chat: a ServerWriteReactor that
// writes one request's events (GenerateReactor; tool-call deltas for Chat with tools), and
// one that only ends a call with an error (ErrorWriter). Internal to server/grpc/.
//
// Ownership and threads: gRPC owns a reactor from the handler's return until OnDone,
// which deletes it. Its state is under Link::mu, shared (shared_ptr) with the request
// stream's notify, which runs on the scheduler's loop thread; OnDone clears the link under
// the same lock, so a late notify finds no reactor. Calls into the Service (the
// client-held snapshot) are made with the lock released: their callback takes it.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"
#include "grpcpp/grpcpp.h"
#include "server/grpc/grpc_reactor_link.h"
#include "rwkvx/v1/inference.pb.h"
#include "server/metrics/metrics.h"
#include "server/request.h"
#include "server/service/service.h"
#include "server/service/tools.h"

namespace rwkvx {

class GenerateReactor : public grpc::ServerWriteReactor<::rwkvx::v1::GenerateResponse> {
 public:
  // `deadline`: the call's own deadline (time_point::max() = none).
  // `method`: the RPC's name for the request metrics ("Generate", "Chat").
  GenerateReactor(const Tokenizer* tok, ServerMetrics* metrics,
                  std::chrono::system_clock::time_point deadline, std::string method = "Generate");
  // Starts streaming `s` (any thread, once). After it the reactor may already be finished
  // and deleted.
  void Attach(std::shared_ptr<RequestStream> s);
  // Client-held state: streams the generation's stream; its new snapshot goes on the last
  // event (any thread, once, instead of the above).
  void Attach(std::shared_ptr<ClientHeldGeneration> g);
  // Ends the call with `st` before anything was attached (any thread).
  void Fail(const absl::Status& st);
  // Before Attach: `text` goes in front of the first event's text (Generate's echo).
  void SetEcho(std::string text) { echo_ = std::move(text); }
  // Before Attach: the reply may be tool calls (Chat with tools); they go out as
  // tool_calls deltas, and finish_reason is "tool_calls" when they complete.
  void SetTools() { tools_ = true; }

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  using Link = ReactorLink<GenerateReactor>;
  // A client-held generation to finish once the lock is released.
  struct Ending {
    std::shared_ptr<ClientHeldGeneration> gen;
    GenerateEvent last;
  };
  // Pumps under link->mu, then finishes a client-held generation outside it.
  static void Pump(const std::shared_ptr<Link>& link);
  void PumpLocked(Ending* ending);
  void EndWithSnapshot(absl::StatusOr<std::string> snapshot);  // under link->mu
  void Count(grpc::StatusCode c);
  // Tools: the text of `e` through the reader into resp_ (content and call deltas).
  void AddToolText(const std::string& text, bool final);

  const Tokenizer* tok_;
  ServerMetrics* metrics_;
  const std::chrono::system_clock::time_point deadline_;
  std::shared_ptr<Link> link_;
  std::string method_ = "Generate";  // the metrics label
  // Under link_->mu.
  std::shared_ptr<RequestStream> stream_;
  std::shared_ptr<ClientHeldGeneration> client_held_;
  std::deque<GenerateEvent> pending_;
  ::rwkvx::v1::GenerateResponse resp_;
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  std::string echo_;  // cleared once sent
  bool tools_ = false;
  ToolCallReader reader_;
};

// Ends a Generate call with an error at once.
class ErrorWriter : public grpc::ServerWriteReactor<::rwkvx::v1::GenerateResponse> {
 public:
  explicit ErrorWriter(grpc::Status s) { Finish(s); }
  void OnDone() override { delete this; }
};

}  // namespace rwkvx
