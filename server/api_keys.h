// API keys for Bearer auth on the HTTP /v1/* routes and every gRPC method, and the one
// auth check both frontends run (CheckApiKey). The set can be replaced while serving
// (SIGHUP re-reads --api-key-file: key rotation without a restart); readers see either
// the old set or the new one, never a mix.
// Threads: any thread may call Allows / Required / CheckApiKey; Replace from one thread
// (the main one). ServeMain owns the ApiKeys; the frontends hold a const pointer.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rwkvx {

// True if `header_value` is "Bearer <k>" for some k in `keys`; constant time in the keys'
// contents.
bool CheckBearer(const std::string& header_value, const std::vector<std::string>& keys);

class ApiKeys {
 public:
  explicit ApiKeys(std::vector<std::string> keys = {});
  bool Required() const;  // some key is configured (else no auth)
  // True when no key is configured or `authorization` carries a configured one.
  bool Allows(const std::string& authorization) const;
  void Replace(std::vector<std::string> keys);
  size_t size() const;

  // One key per line; trailing spaces and CRs are dropped, blank lines skipped.
  static absl::StatusOr<std::vector<std::string>> ReadFile(const std::string& path);

 private:
  std::shared_ptr<const std::vector<std::string>> Get() const;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<std::string>> keys_;
};

// Where a client puts its key (named in the error message).
enum class KeyCarrier { kHttpHeader, kGrpcMetadata };

// The auth check of every protected call: OK when `keys` is null or holds no key, or when
// `authorization` (the HTTP header / gRPC metadata value) is "Bearer <k>" for a held key;
// else Unauthenticated with a message saying how to send one.
absl::Status CheckApiKey(const ApiKeys* keys, const std::string& authorization,
                         KeyCarrier carrier);

}  // namespace rwkvx
