#include "server/grpc/grpc_convert.h"

#include "absl/time/time.h"
#include "server/errors.h"

namespace rwkvx {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(MapStatusCode(s.code()).grpc_code),
                      ClientMessage(s));
}

void FillSession(const StoredSessionInfo& i, ::rwkvx::v1::Session* out) {
  out->set_session_id(i.name);
  out->set_state_bytes(i.state_bytes);
  out->set_kv_tokens(i.kv_tokens);
  out->set_tokens_seen(i.tokens_seen);
  out->set_created_unix_ms(absl::ToUnixMillis(i.created));
  out->set_last_used_unix_ms(absl::ToUnixMillis(i.last_used));
  out->set_expires_unix_ms(absl::ToUnixMillis(i.expires));
  out->set_busy(i.busy);
  out->set_pending_tokens(i.pending_tokens);
  out->set_tier(SessionTierName(i.tier));
  out->set_saved(i.saved);
}

}  // namespace rwkvx
