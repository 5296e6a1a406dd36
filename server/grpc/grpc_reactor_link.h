// ReactorLink: how a gRPC write reactor is reached from callbacks that may outlive it (the
// scheduler's loop thread). The reactor and its callbacks share the link (shared_ptr);
// the reactor's state is guarded by `mu`, and OnDone sets `r` to null under it before the
// reactor is deleted, so a late callback finds no reactor. Internal to server/grpc/.
#pragma once

#include <mutex>

namespace rwkvx {

template <typename Reactor>
struct ReactorLink {
  std::mutex mu;
  Reactor* r = nullptr;
};

}  // namespace rwkvx
