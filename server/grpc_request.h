// gRPC GenerateRequest (proto) -> the frontend-neutral GenerateParams. A pure function
// over the message, callable from any thread; value ranges are checked later by the
// Service. Split out of grpc_server.cc so tests/fuzz/proto_request_fuzz.cc can reach it.
#pragma once

#include <chrono>

#include "rwkvx/v1/inference.pb.h"
#include "server/service.h"

namespace rwkvx {

// `deadline` is the call's deadline (time_point::max() = none); one already passed
// becomes a 1 ms timeout, so the request ends with DEADLINE_EXCEEDED, not unbounded.
GenerateParams GenerateParamsFromProto(const ::rwkvx::v1::GenerateRequest& r,
                                       std::chrono::system_clock::time_point deadline);

}  // namespace rwkvx
