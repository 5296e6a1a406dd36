// Internal values -> gRPC replies: the status (through the one error table, server/
// errors.h) and the session message. Pure functions; any thread.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "rwkvx/v1/inference.pb.h"
#include "server/session_info.h"

namespace rwkvx {

// OK -> OK; else the table's gRPC code with the client-safe message (ClientMessage).
grpc::Status ToGrpc(const absl::Status& s);

void FillSession(const StoredSessionInfo& info, ::rwkvx::v1::Session* out);

}  // namespace rwkvx
