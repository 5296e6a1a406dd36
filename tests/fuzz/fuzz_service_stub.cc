#include "tests/fuzz/fuzz_service_stub.h"

#include <new>

#include "engine/tokenizer/tokenizer.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {

// Stands in for scheduler.cc (not linked into the fuzz targets): every request is
// refused, like a full queue. It does not touch the object.
absl::Status Scheduler::Submit(std::shared_ptr<RequestStream> stream) {
  stream->Cancel();
  return absl::ResourceExhaustedError("fuzz: nothing is ever scheduled");
}

void GenerateOrDie(const GenerateParams& p) {
  static const std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  // Raw storage: only Submit (above) is ever called on it.
  alignas(Scheduler) static unsigned char storage[sizeof(Scheduler)];
  static Service* svc = [] {
    ModelDescription m;
    m.id = "fuzz-model";
    m.tokenizer = "bytes";
    m.backend = "cpu";
    m.vocab = tok->VocabSize();
    return new Service(reinterpret_cast<Scheduler*>(storage), tok.get(), m, ServiceLimits{});
  }();
  auto r = svc->Generate(p);
  if (r.ok()) std::abort();  // Submit refuses everything
  if (r.status().message().empty()) std::abort();
  auto code = r.status().code();
  if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound &&
      code != absl::StatusCode::kResourceExhausted) {
    std::abort();
  }
}

}  // namespace rwkvx
