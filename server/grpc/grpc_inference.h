// rwkvx.v1.Inference over the Service (callback API): each RPC checks the API key
// (CheckApiKey), translates the message to a Service call and the answer back; Generate
// and Chat stream through a GenerateReactor (grpc_generate.h). Internal to server/grpc/.
//
// Threads: RPC handlers run on gRPC's threads; the Service's callbacks complete the unary
// reactors from the scheduler's loop thread (a reactor's Finish never blocks). The Service,
// metrics and keys outlive the gRPC server that holds this.
#pragma once

#include "grpcpp/grpcpp.h"
#include "rwkvx/v1/inference.grpc.pb.h"
#include "server/api_keys.h"
#include "server/metrics/metrics.h"
#include "server/service/service.h"

namespace rwkvx {

class InferenceService final : public ::rwkvx::v1::Inference::CallbackService {
 public:
  using Writer = grpc::ServerWriteReactor<::rwkvx::v1::GenerateResponse>;
  using Unary = grpc::ServerUnaryReactor;
  using Ctx = grpc::CallbackServerContext;

  InferenceService(::rwkvx::Service* service, ServerMetrics* metrics, const ApiKeys* keys)
      : svc_(service), metrics_(metrics), keys_(keys) {}

  Writer* Generate(Ctx* ctx, const ::rwkvx::v1::GenerateRequest* req) override;
  Writer* Chat(Ctx* ctx, const ::rwkvx::v1::ChatRequest* req) override;
  Unary* Tokenize(Ctx* ctx, const ::rwkvx::v1::TokenizeRequest* req,
                  ::rwkvx::v1::TokenizeResponse* resp) override;
  Unary* Detokenize(Ctx* ctx, const ::rwkvx::v1::DetokenizeRequest* req,
                    ::rwkvx::v1::DetokenizeResponse* resp) override;
  Unary* ListModels(Ctx* ctx, const ::rwkvx::v1::ListModelsRequest* req,
                    ::rwkvx::v1::ListModelsResponse* resp) override;
  Unary* CreateSession(Ctx* ctx, const ::rwkvx::v1::CreateSessionRequest* req,
                       ::rwkvx::v1::Session* resp) override;
  Unary* AppendSession(Ctx* ctx, const ::rwkvx::v1::AppendSessionRequest* req,
                       ::rwkvx::v1::Session* resp) override;
  // Progress, then the session (grpc_append.h); cancelling the call cancels the append.
  grpc::ServerWriteReactor<::rwkvx::v1::AppendProgress>* AppendSessionStream(
      Ctx* ctx, const ::rwkvx::v1::AppendSessionRequest* req) override;
  Unary* ForkSession(Ctx* ctx, const ::rwkvx::v1::ForkSessionRequest* req,
                     ::rwkvx::v1::Session* resp) override;
  Unary* SnapshotSession(Ctx* ctx, const ::rwkvx::v1::SnapshotSessionRequest* req,
                         ::rwkvx::v1::SessionSnapshot* resp) override;
  Unary* RestoreSession(Ctx* ctx, const ::rwkvx::v1::RestoreSessionRequest* req,
                        ::rwkvx::v1::Session* resp) override;
  Unary* ListSessions(Ctx* ctx, const ::rwkvx::v1::ListSessionsRequest* req,
                      ::rwkvx::v1::ListSessionsResponse* resp) override;
  Unary* GetSession(Ctx* ctx, const ::rwkvx::v1::GetSessionRequest* req,
                    ::rwkvx::v1::Session* resp) override;
  Unary* DeleteSession(Ctx* ctx, const ::rwkvx::v1::DeleteSessionRequest* req,
                       ::rwkvx::v1::DeleteSessionResponse* resp) override;

  // The largest message a client may send: a snapshot plus room for the rest.
  size_t max_receive_bytes() const;

 private:
  absl::Status Auth(Ctx* ctx) const;
  // An RPC answered later: after the key check, `start(reactor)` makes the Service call
  // whose callback finishes the reactor.
  template <typename Start>
  Unary* Async(Ctx* ctx, const char* method, Start start);
  void Count(const char* method, grpc::StatusCode c);
  Writer* Error(const char* method, const absl::Status& s);
  void Finish(Unary* r, const char* method, const absl::Status& s);
  Unary* Done(Ctx* ctx, const char* method, const absl::Status& s);
  // Completes `reactor` with the session (into *resp) or the error.
  ::rwkvx::Service::SessionCallback SessionDone(Unary* reactor, const char* method,
                                       ::rwkvx::v1::Session* resp);

  ::rwkvx::Service* svc_;
  ServerMetrics* metrics_;
  const ApiKeys* keys_;
};

}  // namespace rwkvx
