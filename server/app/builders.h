// The parts `rwkvx serve` is built from, each made from the flags (serve_flags.h): the
// served model, the tokenizer, the backend, the options of the scheduler, service and
// HTTP frontend, and the API keys. ServeMain (serve_main.cc) wires them together.
// Called on the main thread at start-up (ReloadApiKeys also on SIGHUP, from the main
// thread); each returns what it built, owned by the caller.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/api_keys.h"
#include "server/app/serve_flags.h"
#include "server/http/http_options.h"
#include "server/initial_states.h"
#include "server/scheduling/scheduler.h"
#include "server/service/service.h"

namespace rwkvx {

// InvalidArgument naming the flag whose value is out of range.
absl::Status CheckServeFlags(const ServeFlags& f);

// The model to serve and how it is presented to clients.
struct ServedModel {
  std::shared_ptr<Model> model;  // with the --attn-* / --kv-* flags applied
  std::string name;              // --model-name, else derived
  std::string description;
  bool random_weights = false;
};
// --model, or the embedded demo model, or (--embedded-seed) random weights; logs which.
absl::StatusOr<ServedModel> BuildServedModel(const ServeFlags& f);

// The limits that follow the model (docs/SERVER.md): --max-prompt-tokens 0 becomes the
// model's declared context (sidecar ctx_len), else kDefaultPromptCap; --max-body-bytes 0
// becomes kBodyBytesPerPromptToken per prompt token, at least 1 MiB. Logs the limits in
// force and where each came from.
void ApplyModelLimits(const Model& model, ServeFlags* f);

// --max-batch-tokens auto (0): kBatchTokensCuda on the backend named "cuda", else
// kBatchTokensCpu. Call once the backend is built (like ApplyPrefixCacheDefault, it follows
// the backend that serves, also when --backend auto fell back to the CPU); the CUDA backend
// reserves its step workspace for kBatchTokensCuda rows while the flag is auto. Logs the
// value in force and why. BatchTokens(f): the value, kBatchTokensCpu while unresolved.
inline constexpr int kBatchTokensCpu = 512;
inline constexpr int kBatchTokensCuda = 4096;
void ResolveBatchTokens(const std::string& backend_name, ServeFlags* f);
inline int BatchTokens(const ServeFlags& f) { return f.max_batch_tokens > 0 ? f.max_batch_tokens : kBatchTokensCpu; }

// --prefix-cache-bytes auto (-1): a quarter of the backend's session memory
// (MemoryInfo::capacity_bytes), or kPrefixCacheCpuDefaultBytes where the backend has no
// budget (the CPU without --memory-budget-bytes). Logs the size in force and why.
inline constexpr long long kPrefixCacheCpuDefaultBytes = 1LL << 30;
void ApplyPrefixCacheDefault(const MemoryInfo& memory, ServeFlags* f);

// --tokenizer / --vocab; InvalidArgument when it has more ids than the model.
absl::StatusOr<std::unique_ptr<Tokenizer>> BuildTokenizer(const ServeFlags& f, const Model& model);

// --backend (auto: CUDA when usable, else CPU; the log says which and why), --weights.
absl::StatusOr<std::unique_ptr<Backend>> BuildBackend(const ServeFlags& f,
                                                      std::shared_ptr<const Model> model);

SchedulerOptions SchedulerOptionsFromFlags(const ServeFlags& f);
// --stream-writer: on, off, or (auto) on where the host has >= 4 hardware threads (with
// fewer, the notifier's thread competes with the scheduler's: bench/serve/README.md).
bool StreamWriterOn(const ServeFlags& f);
ServiceLimits ServiceLimitsFromFlags(const ServeFlags& f);
// The --initial-state files, each loaded and checked against the model (a bad file fails
// start-up, naming it).
absl::StatusOr<std::unique_ptr<InitialStates>> BuildInitialStates(const ServeFlags& f, const Model& model);
ModelDescription DescribeModel(const ServedModel& m, const Tokenizer& tok,
                               const std::string& backend_name);
// `keys` (null = none) must outlive the server.
HttpOptions HttpOptionsFromFlags(const ServeFlags& f, const ApiKeys* keys);

// The --api-key flags plus the keys of --api-key-file.
absl::StatusOr<std::vector<std::string>> ApiKeysFromFlags(const ServeFlags& f);
// SIGHUP: re-reads --api-key-file into `keys`. An unreadable file, or one emptied while
// keys are in force, keeps the current keys (logged): rotation never turns auth off.
void ReloadApiKeys(const ServeFlags& f, ApiKeys* keys);

}  // namespace rwkvx
