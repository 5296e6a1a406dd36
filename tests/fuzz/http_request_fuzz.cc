// libFuzzer target: raw bytes -> Beast HTTP request parser (with the server's header and
// body limits) -> OpenAI JSON body parsing for both endpoints.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "server/openai/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace http = boost::beast::http;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The body alone, as JSON.
  (void)rwkvx::ParseOpenAiRequest(rwkvx::ApiKind::kCompletion, in, 64);
  (void)rwkvx::ParseOpenAiRequest(rwkvx::ApiKind::kChat, in, 64);
  // The bytes as a whole HTTP request.
  http::request_parser<http::string_body> p;
  p.body_limit(1 << 20);
  p.header_limit(16 << 10);
  p.eager(true);
  boost::beast::error_code ec;
  size_t used = p.put(boost::asio::buffer(data, size), ec);
  (void)used;
  if (!ec && p.is_done()) {
    const std::string& body = p.get().body();
    (void)rwkvx::ParseOpenAiRequest(rwkvx::ApiKind::kChat, body, 64);
  }
  return 0;
}
