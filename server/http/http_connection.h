// One HTTP/1.1 connection of the HTTP frontend (internal to server/http/*.cc): reading,
// routing through the route table (http_routes.h), responses. Lives on its own strand;
// owned by shared_ptrs held by its pending async operations. Callbacks from the Service
// (scheduler loop thread) only post back to the strand.
#pragma once

#include <atomic>
#include <functional>
#include <utility>  // before Boost.Asio (awaitable.hpp needs std::exchange)
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "server/http/http_options.h"
#include "server/http/http_routes.h"
#include "server/metrics/metrics.h"
#include "server/openai/openai_response.h"
#include "server/openai/responses_response.h"
#include "server/service/service.h"

namespace rwkvx {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;

struct HttpShared {
  Service* service = nullptr;
  ServerMetrics* metrics = nullptr;
  HttpOptions opts;
  std::atomic<int> active_generations{0};  // responses still being produced/written
  std::atomic<int> open_connections{0};    // HttpConnection objects alive
  ResponseRecords responses;               // /v1/responses objects (http_responses.cc)
};

// A request body that must be a JSON object (nesting checked against max_depth); an empty
// body is {} where allow_empty. InvalidArgument otherwise.
absl::StatusOr<nlohmann::json> ParseJsonBody(const std::string& body, int max_depth, bool allow_empty);

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(net::ip::tcp::socket socket, HttpShared* shared);
  ~HttpConnection();
  void Start();
  void Close();  // from any thread: posts a shutdown to the strand

 private:
  using Request = http::request<http::string_body>;

  void DoRead();     // waits (idle_timeout) for a request's first bytes
  void ReadHeader();  // then the whole request within read_timeout
  void OnHeader(beast::error_code ec);
  void ReadBody();
  void OnRead(beast::error_code ec);
  void Handle(Request req);
  static const std::vector<HttpRoute>& Routes();  // the route table (http_connection.cc)
  void Send(int status, std::string content_type, std::string body,
            std::vector<std::pair<std::string, std::string>> extra = {});
  void SendError(const absl::Status& s);
  void SendJson(absl::StatusOr<std::string> json_body);  // 200 with the body, or the error
  // A callback for the Service's async calls (made on the strand, called on any thread)
  // that runs `fn(*this, result)` back on this connection's strand.
  template <typename T, typename Fn>
  std::function<void(T)> Later(Fn fn) {
    return [self = shared_from_this(), exec = stream_.get_executor(), fn](T result) {
      net::post(exec, [self, fn, result = std::move(result)]() mutable {
        fn(*self, std::move(result));
      });
    };
  }
  void OnWritten(beast::error_code ec, bool close);
  void Count(int status);
  void DoClose();

  // Routes without state (http_connection.cc).
  void Health(const PathParams&);
  void Version(const PathParams&);  // {"version", "backend", "model"}
  void Readiness(const PathParams&);
  void Metrics(const PathParams&);
  void ListModels(const PathParams&);
  void Tokenize(const PathParams&);    // http_tokenize.cc
  void Detokenize(const PathParams&);
  void GetModel(const PathParams& p);  // {model id}
  // Generation (http_generate.cc).
  void Completions(const PathParams&);
  void ChatCompletions(const PathParams&);
  void StartGenerate(ApiKind kind, const std::string& session_id = "");
  // The session API (http_sessions.cc); p[0] is the session id where the path has one.
  Service::SessionCallback InfoReply();  // the session as the 200 body, on the strand
  void ListSessions(const PathParams&);
  void CreateSession(const PathParams&);
  void GetSession(const PathParams& p);
  void DeleteSession(const PathParams& p);
  void AppendSession(const PathParams& p);
  void SessionCompletions(const PathParams& p);
  void ForkSession(const PathParams& p);
  // POST /v1/sessions/{id}/append with "stream": SSE progress, then the session; the
  // client going away cancels the append (AppendControl).
  struct AppendStream;
  void StreamAppend(std::string name, PromptInput prompt);
  void AppendWrite(std::string events, bool last);
  void FlushAppend();  // writes what is pending unless a write is in flight
  void OnAppendWritten(beast::error_code ec);
  void EndAppend(absl::StatusOr<StoredSessionInfo> r);
  void CancelAppend();
  std::string SseHeaders() const;  // a 200 text/event-stream head, chunked
  // The Responses API (http_responses.cc); p[0] is the response id.
  struct ResponseCall;
  void CreateResponse(const PathParams&);
  void GetResponse(const PathParams& p);
  void DeleteResponse(const PathParams& p);
  void StartResponse(std::shared_ptr<ResponseCall> call, std::shared_ptr<ResponseGeneration> gen);
  void PumpResponse();
  void EndResponse(absl::Status s);  // the answer is stored (or not): the last bytes
  void QueueResponseBytes(std::string events, bool last);
  void FlushResponse();
  void OnResponseWritten(beast::error_code ec);
  void FinishResponse();
  void CancelResponse();
  void GetSnapshot(const PathParams& p);
  void PutSnapshot(const PathParams& p);
  // POST /v1/snapshot/completions: client-held state (Service::GenerateFromSnapshot).
  void ClientHeldCompletions(const PathParams&);
  void PumpClientHeld(std::shared_ptr<struct ClientHeldCall> call);
  void Pump();
  void WatchDisconnect();
  void OnWatch(beast::error_code ec, size_t n);
  void FinishGenerate();
  // A generation (completions, chat, responses) ended: the drain count, then close (client
  // gone) or stop the disconnect watch so that the next request is read.
  void GenerationEnded();
  void WriteChunk(std::string data, bool last);
  void OnStreamWritten(beast::error_code ec);
  void CancelStreams();  // the generation's streams and a streamed append
  // After a streamed response's last byte: close, or read the next request.
  void ResumeAfterStream();

  beast::tcp_stream stream_;
  HttpShared* shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  std::string route_;  // metrics label
  bool keep_alive_ = true;
  // CORS: the Access-Control-Allow-Origin value for this request ("" = none: CORS off, no
  // Origin header, or an origin not in --allowed-origins).
  std::string cors_origin_;
  void SetCorsOrigin(std::string_view origin);  // from the request's Origin and --allowed-origins
  void Preflight(const struct HttpRoute* route);
  bool closed_ = false;

  // Current generation, if any.
  struct Gen {
    ApiKind kind;
    bool stream = false;
    std::vector<std::shared_ptr<RequestStream>> streams;
    std::vector<bool> done;
    std::unique_ptr<OpenAiResponder> responder;
    absl::Status error;  // first error of a choice
    bool headers_sent = false;
    bool writing = false;
    bool finishing = false;  // all choices done, tail written/being written
    std::string pending;     // SSE bytes not yet written
    std::string inflight;
  };
  std::unique_ptr<Gen> gen_;
  std::shared_ptr<AppendStream> append_;  // a streamed append, if any
  std::shared_ptr<ResponseCall> resp_;    // a /v1/responses generation, if any
  bool watching_ = false;        // a disconnect-watch read is pending
  bool client_gone_ = false;
  bool read_after_watch_ = false;
  std::shared_ptr<void> write_hold_;
};

}  // namespace rwkvx
