#include "tools/cli_args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rwkvx {

absl::StatusOr<CliArgs> CliArgs::Parse(int argc, char** argv, const std::set<std::string>& known,
                                       const std::set<std::string>& boolean) {
  CliArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", s, "'"));
    s = s.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = s.find('='); eq != std::string::npos) {
      value = s.substr(eq + 1);
      s = s.substr(0, eq);
      has_value = true;
    }
    if (!known.count(s)) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", s));
    if (boolean.count(s)) {
      a.values_[s] = has_value ? value : "true";
      continue;
    }
    if (!has_value) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("flag --", s, " needs a value"));
      value = argv[++i];
    }
    a.values_[s] = value;
  }
  return a;
}

std::string CliArgs::Get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

absl::StatusOr<long long> CliArgs::GetInt(const std::string& name, long long def, long long lo,
                                          long long hi) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  long long v;
  if (!absl::SimpleAtoi(it->second, &v))
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be an integer, got '", it->second, "'"));
  if (v < lo || v > hi)
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be in [", lo, ", ", hi, "], got ", v));
  return v;
}

}  // namespace rwkvx
