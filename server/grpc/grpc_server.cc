// GrpcServer: builds and runs the grpc::Server with rwkvx.v1.Inference (grpc_inference.h),
// the default health service and reflection.
#include "server/grpc/grpc_server.h"

#include <chrono>

#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/grpc/grpc_inference.h"

namespace rwkvx {

struct GrpcServer::Impl {
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<grpc::Server> server;
};

GrpcServer::GrpcServer(Service* service, ServerMetrics* metrics, const ApiKeys* api_keys)
    : impl_(std::make_unique<Impl>()) {
  impl_->service = std::make_unique<InferenceService>(service, metrics, api_keys);
}

GrpcServer::~GrpcServer() { Stop(); }

absl::StatusOr<int> GrpcServer::Start(const std::string& host, int port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder b;
  int selected = 0;
  std::string addr = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                     std::to_string(port);
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &selected);
  b.RegisterService(impl_->service.get());
  // Snapshots travel in one message (RestoreSession, Generate's snapshot): accept up to
  // --max-snapshot-bytes plus room for the rest of the request.
  b.SetMaxReceiveMessageSize(static_cast<int>(impl_->service->max_receive_bytes()));
  impl_->server = b.BuildAndStart();
  if (!impl_->server || selected == 0) {
    impl_->server.reset();
    return absl::UnavailableError("gRPC: cannot listen on " + addr);
  }
  if (auto* h = impl_->server->GetHealthCheckService()) {
    h->SetServingStatus(true);
    h->SetServingStatus("rwkvx.v1.Inference", true);
  }
  return selected;
}

void GrpcServer::SetNotServing() {
  if (!impl_->server) return;
  if (auto* h = impl_->server->GetHealthCheckService()) {
    h->SetServingStatus(false);
    h->SetServingStatus("rwkvx.v1.Inference", false);
  }
}

void GrpcServer::Stop() {
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace rwkvx
