// Options of the HTTP frontend (server/http/http_server.h), filled from the flags by
// ServeMain (server/app/builders.cc). Plain values, copied into the server at
// construction; read by its I/O threads afterwards, never changed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/api_keys.h"

namespace rwkvx {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = pick a free port (read it back with port())
  int threads = 2;
  size_t max_body_bytes = size_t{1} << 20;
  size_t max_header_bytes = 16 << 10;
  int max_json_depth = 64;
  const ApiKeys* api_keys = nullptr;  // null or no keys = no auth; must outlive the server
  int socket_send_buffer_bytes = 0;   // SO_SNDBUF of accepted sockets (0 = OS default)
  // A request's headers and body must arrive within read_timeout of its first byte (a
  // slowloris sender is dropped); a connection may wait idle_timeout for that first byte.
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Seconds(120);
  // Open connections; past it a new connection gets 503 and is closed at once.
  int max_connections = 8192;
  // CORS (--allowed-origins): the browser origins ("https://app.example:8443") that may
  // call the API from a page's script, or "*" for any; empty = no CORS headers (browsers
  // then refuse cross-origin calls). Preflights (OPTIONS) are answered before the API-key
  // check, as browsers send them without credentials; the request itself still needs a key.
  std::vector<std::string> allowed_origins;
};

}  // namespace rwkvx
