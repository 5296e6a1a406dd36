// A Service for the request fuzz targets (openai_request_fuzz, proto_request_fuzz): the
// byte tokenizer, the server's default limits, and no running scheduler. The targets'
// fuzz_service_stub.cc defines Scheduler::Submit to refuse every request (as a full
// queue does), so Service::Generate runs all of its validation, tokenization and the
// fan-out of `n` streams, and nothing is ever generated. The session API
// (service_sessions.cc) is not linked. Single-threaded.
#pragma once

#include <cstdlib>
#include <memory>

#include "server/service/service.h"

namespace rwkvx {

// Runs Service::Generate on `p` and checks its contract: an error says something, and
// since nothing can be submitted, the only way to pass validation is ResourceExhausted.
void GenerateOrDie(const GenerateParams& p);

}  // namespace rwkvx
