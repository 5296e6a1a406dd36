// Minimal `--name value` / `--name=value` flag parsing for the rwkvx subcommands.
// Used on the main thread only.
#pragma once

#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"

namespace rwkvx {

class CliArgs {
 public:
  // `known` lists flag names (without --); `boolean` those that take no value.
  static absl::StatusOr<CliArgs> Parse(int argc, char** argv, const std::set<std::string>& known,
                                       const std::set<std::string>& boolean = {});
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& def = "") const;
  absl::StatusOr<long long> GetInt(const std::string& name, long long def, long long lo, long long hi) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace rwkvx
