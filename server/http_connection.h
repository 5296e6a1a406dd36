// One HTTP/1.1 connection of the HTTP frontend (internal to server/http_*.cc).
// Lives on its own strand; owned by shared_ptrs held by its pending async operations.
#pragma once

#include <atomic>
#include <utility>  // before Boost.Asio (awaitable.hpp needs std::exchange)
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "server/metrics.h"
#include "server/openai_response.h"
#include "server/service.h"
#include "server/http_server.h"

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
};

// The body limit of a request to `target`: --max-snapshot-bytes for snapshot uploads
// (http_sessions.cc), else `default_limit`.
size_t SessionBodyLimit(std::string_view target, size_t default_limit, Service& svc);

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
  void Send(int status, std::string content_type, std::string body,
            std::vector<std::pair<std::string, std::string>> extra = {});
  void SendError(const absl::Status& s);
  void OnWritten(beast::error_code ec, bool close);
  void Count(int status);
  void DoClose();

  // Generation (http_generate.cc).
  void StartGenerate(ApiKind kind, const std::string& session_id = "");
  // The session API, /v1/sessions... and /v1/snapshot/completions (http_sessions.cc):
  // false when `target` is not one of its paths.
  bool HandleSessions(const std::string& target);
  void SessionReply(absl::StatusOr<std::string> json_body);
  void StartClientHeld();
  void PumpClientHeld(std::shared_ptr<struct ClientHeldCall> call);
  void Pump();
  void WatchDisconnect();
  void OnWatch(beast::error_code ec, size_t n);
  void FinishGenerate();
  void WriteChunk(std::string data, bool last);
  void OnStreamWritten(beast::error_code ec);
  void CancelStreams();

  beast::tcp_stream stream_;
  HttpShared* shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request req_;
  std::string route_;  // metrics label
  bool keep_alive_ = true;
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
  bool watching_ = false;        // a disconnect-watch read is pending
  bool client_gone_ = false;
  bool read_after_watch_ = false;
  std::shared_ptr<void> write_hold_;
};

}  // namespace rwkvx
