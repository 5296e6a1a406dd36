// HttpConnection: reading requests, the route table, plain responses. Generation lives
// in http_generate.cc, the session API in http_sessions.cc.
#include "server/http/http_connection.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/errors.h"
#include "server/log.h"

namespace rwkvx {
namespace {

std::string PathOf(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

}  // namespace

const std::vector<HttpRoute>& HttpConnection::Routes() {
  using V = http::verb;
  using C = HttpConnection;
  static const std::vector<HttpRoute> kRoutes = {
      {"/health", "/health", {{V::get, &C::Health}}},
      {"/healthz", "/health", {{V::get, &C::Health}}},
      {"/livez", "/health", {{V::get, &C::Health}}},
      {"/ready", "/ready", {{V::get, &C::Readiness}}},
      {"/readyz", "/ready", {{V::get, &C::Readiness}}},
      {"/metrics", "/metrics", {{V::get, &C::Metrics}}},
      {"/version", "/version", {{V::get, &C::Version}}},
      {"/v1/completions", "/v1/completions", {{V::post, &C::Completions}}},
      {"/v1/chat/completions", "/v1/chat/completions", {{V::post, &C::ChatCompletions}}},
      {"/v1/models", "/v1/models", {{V::get, &C::ListModels}}},
      {"/tokenize", "/tokenize", {{V::post, &C::Tokenize}}},
      {"/detokenize", "/detokenize", {{V::post, &C::Detokenize}}},
      {"/v1/models/{*}", "/v1/models", {{V::get, &C::GetModel}}},
      {"/v1/sessions", "/v1/sessions", {{V::get, &C::ListSessions}, {V::post, &C::CreateSession}}},
      {"/v1/sessions/{}", "/v1/sessions", {{V::get, &C::GetSession}, {V::delete_, &C::DeleteSession}}},
      {"/v1/sessions/{}/append", "/v1/sessions", {{V::post, &C::AppendSession}}},
      {"/v1/sessions/{}/completions", "/v1/sessions", {{V::post, &C::SessionCompletions}}},
      {"/v1/sessions/{}/fork", "/v1/sessions", {{V::post, &C::ForkSession}}},
      {"/v1/sessions/{}/snapshot", "/v1/sessions",
       {{V::get, &C::GetSnapshot}, {V::put, &C::PutSnapshot}, {V::post, &C::PutSnapshot}},
       /*snapshot_upload=*/true},
      {"/v1/responses", "/v1/responses", {{V::post, &C::CreateResponse}}},
      {"/v1/responses/{}", "/v1/responses", {{V::get, &C::GetResponse}, {V::delete_, &C::DeleteResponse}}},
      {"/v1/snapshot/completions", "/v1/snapshot/completions",
       {{V::post, &C::ClientHeldCompletions}}, /*snapshot_upload=*/true},
  };
  return kRoutes;
}

HttpConnection::HttpConnection(net::ip::tcp::socket socket, HttpShared* shared)
    : stream_(std::move(socket)), shared_(shared) {
  shared_->open_connections.fetch_add(1);
}

HttpConnection::~HttpConnection() { shared_->open_connections.fetch_sub(1); }

void HttpConnection::Start() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void HttpConnection::Close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    self->CancelStreams();
    self->DoClose();
  });
}

void HttpConnection::DoClose() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.close();
}

void HttpConnection::DoRead() {
  if (closed_) return;
  if (buffer_.size() > 0) {  // pipelined bytes: a request has begun
    ReadHeader();
    return;
  }
  // Keep-alive (or a fresh connection): wait up to idle_timeout for the first bytes.
  stream_.expires_after(absl::ToChronoNanoseconds(shared_->opts.idle_timeout));
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                     beast::error_code ec, size_t n) {
    if (self->closed_) return;
    if (ec) {
      self->DoClose();
      return;
    }
    self->buffer_.commit(n);
    self->ReadHeader();
  });
}

void HttpConnection::ReadHeader() {
  parser_.emplace();
  parser_->body_limit(shared_->opts.max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(shared_->opts.max_header_bytes));
  // From its first byte, the whole request must arrive within read_timeout: a slow
  // sender (slowloris) cannot hold a connection forever.
  stream_.expires_after(absl::ToChronoNanoseconds(shared_->opts.read_timeout));
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            self->OnHeader(ec);
                          });
}

void HttpConnection::OnHeader(beast::error_code ec) {
  if (ec || parser_->is_done()) {
    OnRead(ec);
    return;
  }
  auto t = parser_->get().target();
  PathParams ignored;
  const HttpRoute* route = FindRoute(Routes(), PathOf({t.data(), t.size()}), &ignored);
  if (route && route->snapshot_upload) {
    // Snapshots (base64 in JSON for /v1/snapshot/completions: 4/3 of the bytes), plus the request.
    const size_t limit = shared_->opts.max_body_bytes;
    parser_->body_limit(std::max(limit, shared_->service->max_snapshot_bytes() / 3 * 4 + 8 + limit));
  }
  // Clients such as curl send large bodies only after "100 Continue".
  if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(stream_, net::buffer(kContinue),
                     [self = shared_from_this()](beast::error_code wec, size_t) {
                       if (wec) self->DoClose();
                       else self->ReadBody();
                     });
    return;
  }
  ReadBody();
}

void HttpConnection::ReadBody() {
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
}

void HttpConnection::OnRead(beast::error_code ec) {
  if (closed_) return;
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == net::error::operation_aborted || ec == net::error::eof ||
      ec == net::error::connection_reset) {
    DoClose();
    return;
  }
  keep_alive_ = false;
  route_ = "other";
  // A refused request from an allowed origin gets the header too, so that its page can read why.
  beast::string_view origin;
  if (parser_) origin = parser_->get()[http::field::origin];  // (the fields parsed before the error)
  SetCorsOrigin({origin.data(), origin.size()});
  if (ec == http::error::body_limit) {
    Send(413, "application/json",
         OpenAiErrorJsonRaw(absl::StrCat("the request body is larger than ",
                                         shared_->opts.max_body_bytes, " bytes"),
                            "invalid_request_error", "request_too_large"));
    return;
  }
  if (ec == http::error::header_limit) {
    Send(431, "application/json",
         OpenAiErrorJsonRaw("the request headers are too large", "invalid_request_error",
                            "headers_too_large"));
    return;
  }
  if (ec) {
    Send(400, "application/json",
         OpenAiErrorJsonRaw("malformed HTTP request", "invalid_request_error", "bad_request"));
    return;
  }
  keep_alive_ = parser_->get().keep_alive();
  Handle(parser_->release());
}

void HttpConnection::Count(int status) {
  shared_->metrics->http_requests->Add({{"path", route_}, {"code", std::to_string(status)}})
      .Increment();
}

void HttpConnection::Send(int status, std::string content_type, std::string body,
                          std::vector<std::pair<std::string, std::string>> extra) {
  Count(status);
  auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), 11);
  res->set(http::field::server, "rwkvx-serve");
  res->set(http::field::content_type, content_type);
  for (auto& [k, v] : extra) res->set(k, v);
  if (!cors_origin_.empty()) {
    res->set(http::field::access_control_allow_origin, cors_origin_);
    res->set(http::field::access_control_expose_headers, "Retry-After");
    if (cors_origin_ != "*") res->set(http::field::vary, "Origin");
  }
  res->keep_alive(keep_alive_);
  res->body() = std::move(body);
  res->prepare_payload();
  stream_.expires_after(absl::ToChronoNanoseconds(shared_->opts.read_timeout));
  bool close = !keep_alive_;
  http::async_write(stream_, *res,
                    [self = shared_from_this(), res, close](beast::error_code ec, size_t) {
                      self->OnWritten(ec, close);
                    });
}

void HttpConnection::SendError(const absl::Status& s) {
  const ErrorMapping& m = MapStatusCode(s.code());
  std::vector<std::pair<std::string, std::string>> extra;
  if (m.http_status == 429 || m.http_status == 503) extra.emplace_back("Retry-After", "1");
  if (m.http_status == 401) extra.emplace_back("WWW-Authenticate", "Bearer");
  Send(m.http_status, "application/json", OpenAiErrorJson(s), std::move(extra));
}

void HttpConnection::OnWritten(beast::error_code ec, bool close) {
  if (ec || close || closed_) {
    DoClose();
    return;
  }
  if (watching_) {
    read_after_watch_ = true;  // OnWatch resumes reading once the watch read ends
    return;
  }
  DoRead();
}

absl::StatusOr<nlohmann::json> ParseJsonBody(const std::string& body, int max_depth, bool allow_empty) {
  if (body.empty() && allow_empty) return nlohmann::json::object();
  if (auto s = CheckJsonDepth(body, max_depth); !s.ok()) return s;
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  return j;
}

void HttpConnection::SendJson(absl::StatusOr<std::string> body) {
  if (body.ok()) Send(200, "application/json", std::move(*body));
  else SendError(body.status());
}

void HttpConnection::Handle(Request req) {
  req_ = std::move(req);
  const std::string path = PathOf({req_.target().data(), req_.target().size()});
  PathParams params;
  const HttpRoute* route = FindRoute(Routes(), path, &params);
  route_ = route ? std::string(route->label) : "other";
  const auto origin = req_[http::field::origin];
  SetCorsOrigin({origin.data(), origin.size()});
  // A CORS preflight: answered here, before the key check (browsers send none).
  if (!shared_->opts.allowed_origins.empty() && !origin.empty() && req_.method() == http::verb::options &&
      req_.find(http::field::access_control_request_method) != req_.end())
    return Preflight(route);
  // Every /v1/ path needs a key, known or not (an unknown one is not revealed as such), and
  // so do the tokenization endpoints (vLLM's paths, outside /v1/).
  if (path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize") {
    absl::Status auth = CheckApiKey(shared_->opts.api_keys,
                                    std::string(req_[http::field::authorization]),
                                    KeyCarrier::kHttpHeader);
    if (!auth.ok()) return SendError(auth);
  }
  if (!route) {
    return Send(404, "application/json",
                OpenAiErrorJsonRaw("no such endpoint", "invalid_request_error", "not_found"));
  }
  HttpHandler handler = FindHandler(*route, req_.method());
  if (!handler) {
    std::string allow = AllowedMethods(*route);
    return Send(405, "application/json",
                OpenAiErrorJsonRaw(absl::StrCat("use ", allow), "invalid_request_error",
                                   "method_not_allowed"),
                {{"Allow", allow}});
  }
  (this->*handler)(params);
}

void HttpConnection::SetCorsOrigin(std::string_view origin) {
  cors_origin_.clear();
  if (origin.empty()) return;
  for (const std::string& o : shared_->opts.allowed_origins) {
    if (o == "*" || o == origin) {
      cors_origin_ = o == "*" ? "*" : std::string(origin);
      return;
    }
  }
}

void HttpConnection::Preflight(const HttpRoute* route) {
  if (!route) {
    return Send(404, "application/json", OpenAiErrorJsonRaw("no such endpoint", "invalid_request_error", "not_found"));
  }
  if (cors_origin_.empty()) {
    return Send(403, "application/json",
                OpenAiErrorJsonRaw("this origin is not in the server's --allowed-origins", "invalid_request_error",
                                   "origin_not_allowed"));
  }
  const auto asked = req_[http::field::access_control_request_headers];
  Send(204, "text/plain", "",
       {{"Access-Control-Allow-Methods", AllowedMethods(*route)},
        {"Access-Control-Allow-Headers", asked.empty() ? std::string("Authorization, Content-Type") : std::string(asked)},
        {"Access-Control-Max-Age", "600"}});
}

void HttpConnection::Health(const PathParams&) {
  Send(200, "application/json", R"({"status":"ok"})");
}

void HttpConnection::Version(const PathParams&) {
  const ModelDescription& m = shared_->service->model();
  Send(200, "application/json",
       nlohmann::json{{"version", RWKVX_VERSION}, {"backend", m.backend}, {"model", m.id}}.dump());
}

void HttpConnection::Readiness(const PathParams&) {
  if (shared_->service->Ready()) Send(200, "application/json", R"({"status":"ready"})");
  else Send(503, "application/json", R"({"status":"draining"})");
}

void HttpConnection::Metrics(const PathParams&) {
  Send(200, "text/plain; version=0.0.4; charset=utf-8", shared_->metrics->Serialize());
}

namespace {

nlohmann::json ModelJson(const Service& svc) {
  const ModelDescription& m = svc.model();
  return {{"id", m.id},
          {"object", "model"},
          {"created", m.created_unix},
          {"owned_by", "rwkvx"},
          {"description", m.description},
          {"random_weights", m.random_weights},
          {"tokenizer", m.tokenizer},
          {"backend", m.backend},
          {"initial_states", m.initial_states},
          // vLLM's field, read by clients to budget prompts: RWKV-X has no context window, so
          // it is this server's prompt limit (--max-prompt-tokens).
          {"max_model_len", svc.limits().max_prompt_tokens}};
}

}  // namespace

void HttpConnection::ListModels(const PathParams&) {
  nlohmann::json list = {{"object", "list"},
                         {"data", nlohmann::json::array({ModelJson(*shared_->service)})}};
  Send(200, "application/json", list.dump());
}

void HttpConnection::GetModel(const PathParams& p) {
  const Service& svc = *shared_->service;
  if (p[0] == svc.model().id) return Send(200, "application/json", ModelJson(svc).dump());
  SendError(svc.CheckModel(p[0]));
}

}  // namespace rwkvx
