// libFuzzer target: bytes -> rwkvx.v1.GenerateRequest or ChatRequest (protobuf wire
// format) -> GenerateParamsFromProto / ChatParamsFromProto (server/grpc/grpc_request.cc,
// what the gRPC frontend runs: for Chat the messages, the tools and their schemas) ->
// Service::Generate's validation and tokenization (fuzz_service_stub.h). The first byte
// picks whether the call has a deadline (already passed, or none) and which message.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "google/protobuf/stubs/logging.h"
#include "rwkvx/v1/inference.pb.h"
#include "server/grpc/grpc_request.h"
#include "tests/fuzz/fuzz_service_stub.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 in string fields is logged
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  auto deadline = (data[0] & 1) ? std::chrono::system_clock::now() - std::chrono::seconds(1)
                                : std::chrono::system_clock::time_point::max();
  rwkvx::GenerateParams p;
  if (data[0] & 2) {
    rwkvx::v1::ChatRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    auto c = rwkvx::ChatParamsFromProto(req, deadline);
    if (!c.ok()) {
      if (c.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
      return 0;
    }
    p = std::move(c->params);
  } else {
    rwkvx::v1::GenerateRequest req;
    if (!req.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    p = rwkvx::GenerateParamsFromProto(req, deadline);
  }
  if ((data[0] & 1) && !(p.timeout && *p.timeout > absl::ZeroDuration())) std::abort();
  rwkvx::GenerateOrDie(p);
  return 0;
}
