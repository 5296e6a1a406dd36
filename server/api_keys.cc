#include "server/api_keys.h"

#include <algorithm>
#include <fstream>
#include <string_view>
#include <utility>

namespace rwkvx {

bool CheckBearer(const std::string& header_value, const std::vector<std::string>& keys) {
  static const std::string kPrefix = "Bearer ";
  if (header_value.size() < kPrefix.size() ||
      header_value.compare(0, kPrefix.size(), kPrefix) != 0) {
    return false;
  }
  std::string_view given = std::string_view(header_value).substr(kPrefix.size());
  bool ok = false;
  for (const auto& key : keys) {
    // Constant time in the key's content: always walk max(len) bytes.
    size_t n = std::max(given.size(), key.size());
    volatile unsigned char diff = given.size() == key.size() ? 0 : 1;
    for (size_t i = 0; i < n; ++i) {
      unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
      unsigned char b = i < key.size() ? static_cast<unsigned char>(key[i]) : 0;
      diff = diff | (a ^ b);
    }
    ok = ok | (diff == 0);
  }
  return ok;
}

ApiKeys::ApiKeys(std::vector<std::string> keys)
    : keys_(std::make_shared<const std::vector<std::string>>(std::move(keys))) {}

std::shared_ptr<const std::vector<std::string>> ApiKeys::Get() const {
  std::lock_guard<std::mutex> l(mu_);
  return keys_;
}

bool ApiKeys::Required() const { return !Get()->empty(); }

size_t ApiKeys::size() const { return Get()->size(); }

bool ApiKeys::Allows(const std::string& authorization) const {
  auto keys = Get();
  return keys->empty() || CheckBearer(authorization, *keys);
}

void ApiKeys::Replace(std::vector<std::string> keys) {
  auto next = std::make_shared<const std::vector<std::string>>(std::move(keys));
  std::lock_guard<std::mutex> l(mu_);
  keys_ = std::move(next);
}

absl::Status CheckApiKey(const ApiKeys* keys, const std::string& authorization,
                         KeyCarrier carrier) {
  if (keys == nullptr || keys->Allows(authorization)) return absl::OkStatus();
  return absl::UnauthenticatedError(
      carrier == KeyCarrier::kHttpHeader
          ? "a valid API key is required (Authorization: Bearer <key>)"
          : "a valid API key is required (metadata authorization: Bearer <key>)");
}

absl::StatusOr<std::vector<std::string>> ApiKeys::ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::vector<std::string> keys;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) keys.push_back(line);
  }
  if (in.bad()) return absl::DataLossError("error reading " + path);
  return keys;
}

}  // namespace rwkvx
