// The HTTP route table's shape and its matching: each route is a path pattern with the
// methods it answers, so a known path with another method gets 405 + Allow and an
// unknown path 404. The table itself lives with the handlers (http_connection.cc).
// Patterns match segment by segment: "{}" is one non-empty segment, a trailing "{*}" the
// non-empty rest of the path (slashes included). Pure functions over immutable tables;
// any thread.
#pragma once

#include <ostream>  // before Beast's verb.hpp, which streams without it
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "boost/beast/http/verb.hpp"

namespace rwkvx {

class HttpConnection;
using PathParams = std::vector<std::string>;  // what "{}" / "{*}" matched, in order
using HttpHandler = void (HttpConnection::*)(const PathParams&);

struct HttpRoute {
  std::string_view pattern;  // e.g. "/v1/sessions/{}/fork"
  std::string_view label;    // the "path" label of rwkvx_http_requests_total
  std::vector<std::pair<boost::beast::http::verb, HttpHandler>> methods;
  bool snapshot_upload = false;  // the body may be up to --max-snapshot-bytes
};

// True if `path` matches `pattern`; the parameters are appended to *params.
bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params);
// The first route of `table` whose pattern matches `path` (parameters in *params), or null.
const HttpRoute* FindRoute(const std::vector<HttpRoute>& table, std::string_view path,
                           PathParams* params);
// The route's handler for `method`, or null (405).
HttpHandler FindHandler(const HttpRoute& route, boost::beast::http::verb method);
// The Allow header of a 405: the route's methods in table order, e.g. "GET, DELETE".
std::string AllowedMethods(const HttpRoute& route);

}  // namespace rwkvx
