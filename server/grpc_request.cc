#include "server/grpc_request.h"

#include "absl/time/clock.h"

namespace rwkvx {

GenerateParams GenerateParamsFromProto(const ::rwkvx::v1::GenerateRequest& r,
                                       std::chrono::system_clock::time_point deadline) {
  GenerateParams p;
  p.model = r.model();
  if (r.has_text()) p.prompt_text = r.text();
  if (r.has_token_ids()) {
    p.prompt_ids = std::vector<int64_t>(r.token_ids().ids().begin(), r.token_ids().ids().end());
  }
  if (r.max_tokens() != 0) p.max_tokens = r.max_tokens();
  const auto& s = r.sampling();
  if (s.has_temperature()) p.temperature = s.temperature();
  if (s.has_top_p()) p.top_p = s.top_p();
  if (s.has_top_k()) p.top_k = s.top_k();
  if (s.has_presence_penalty()) p.presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) p.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) p.seed = s.seed();
  p.stop.assign(r.stop().begin(), r.stop().end());
  p.stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  p.logprobs = r.logprobs() || r.top_logprobs() > 0;
  p.top_logprobs = r.top_logprobs();
  p.session_id = r.session_id();
  p.ignore_eos = r.ignore_eos();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    p.timeout = absl::FromChrono(deadline) - absl::Now();
    if (*p.timeout <= absl::ZeroDuration()) p.timeout = absl::Milliseconds(1);
  }
  return p;
}

}  // namespace rwkvx
