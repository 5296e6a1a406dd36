// Minimal server logging to stderr (Debian 12's abseil has no absl/log).
// Thread-safe: each statement formats into its own buffer and writes it with one call.
//   SLOG(INFO) << "listening on " << port;
#pragma once

#include <sstream>
#include <string>

namespace rwkvx {

class LogLine {
 public:
  explicit LogLine(const char* level) : level_(level) {}
  ~LogLine();
  template <typename T>
  LogLine& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  const char* level_;
  std::ostringstream os_;
};

}  // namespace rwkvx

#define SLOG(level) ::rwkvx::LogLine(#level)
