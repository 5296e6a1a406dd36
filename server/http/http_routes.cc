#include "server/http/http_routes.h"

namespace rwkvx {
namespace {

std::vector<std::string_view> Segments(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    size_t slash = s.find('/', start);
    out.push_back(s.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

}  // namespace

bool MatchPattern(std::string_view pattern, std::string_view path, PathParams* params) {
  const size_t first = params->size();
  const std::vector<std::string_view> want = Segments(pattern);
  const std::vector<std::string_view> got = Segments(path);
  auto fail = [&] {
    params->resize(first);
    return false;
  };
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] == "{*}" && i + 1 == want.size()) {
      if (i >= got.size()) return fail();
      // The rest of the path, from segment i on.
      size_t at = 0;
      for (size_t k = 0; k < i; ++k) at += got[k].size() + 1;
      if (at >= path.size()) return fail();
      params->emplace_back(path.substr(at));
      return true;
    }
    if (i >= got.size()) return fail();
    if (want[i] == "{}") {
      if (got[i].empty()) return fail();
      params->emplace_back(got[i]);
    } else if (want[i] != got[i]) {
      return fail();
    }
  }
  return got.size() == want.size() ? true : fail();
}

const HttpRoute* FindRoute(const std::vector<HttpRoute>& table, std::string_view path,
                           PathParams* params) {
  for (const HttpRoute& r : table) {
    if (MatchPattern(r.pattern, path, params)) return &r;
  }
  return nullptr;
}

HttpHandler FindHandler(const HttpRoute& route, boost::beast::http::verb method) {
  for (const auto& [verb, handler] : route.methods) {
    if (verb == method) return handler;
  }
  return nullptr;
}

std::string AllowedMethods(const HttpRoute& route) {
  std::string out;
  for (const auto& [verb, handler] : route.methods) {
    if (!out.empty()) out += ", ";
    auto name = boost::beast::http::to_string(verb);
    out.append(name.data(), name.size());
  }
  return out;
}

}  // namespace rwkvx
