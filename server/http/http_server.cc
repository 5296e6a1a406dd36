#include "server/http/http_server.h"

#include <mutex>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "engine/thread_name.h"
#include "server/http/http_connection.h"
#include "server/log.h"

namespace rwkvx {

struct HttpServer::Impl {
  HttpShared shared;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  net::ip::tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<std::weak_ptr<HttpConnection>> conns;
  net::strand<net::io_context::executor_type> trim_strand = net::make_strand(ioc);
  net::steady_timer trim_timer{trim_strand};  // and busy_since_trim: on trim_strand
  bool busy_since_trim = false;
  int idle_ticks = 0;  // idle seconds since the last busy tick (on trim_strand)

  // After a burst of load, glibc keeps the freed memory of its per-thread arenas (gRPC
  // and I/O threads); once the server is idle again, hand it back to the OS so RSS
  // returns to its baseline (tests/load checks this). Checked every second.
  void TrimWhenIdle() {
    trim_timer.expires_after(std::chrono::seconds(1));
    trim_timer.async_wait([this](beast::error_code ec) {
      if (ec) return;
      // Scheduler idleness only: a connection still flushing (or not yet noticed as gone)
      // must not keep the memory of the whole burst (seen: RSS stuck at its peak for 30 s
      // while one vanished client's connection lingered).
      bool idle = shared.service->Idle();
      if (!idle) {
        busy_since_trim = true;
        idle_ticks = 0;
      } else if (busy_since_trim) {
        // Trim 1, 3 and 10 s into the idle period: connections and gRPC calls finish
        // tearing down (and free their buffers) after the last request ends.
        ++idle_ticks;
        if (idle_ticks == 1 || idle_ticks == 3 || idle_ticks == 10) {
#if defined(__GLIBC__)
          malloc_trim(0);
#endif
        }
        if (idle_ticks >= 10) busy_since_trim = false;
      }
      TrimWhenIdle();
    });
  }

  // Past --http-max-connections: a short 503 and close. The response is far smaller than
  // a fresh socket's send buffer, so the non-blocking write completes at once.
  void RefuseConnection(net::ip::tcp::socket sock) {
    static const std::string kBody =
        R"({"error":{"message":"too many open connections","type":"server_error",)"
        R"("code":"too_many_connections","param":null}})";
    static const std::string kBusy = absl::StrCat(
        "HTTP/1.1 503 Service Unavailable\r\nServer: rwkvx-serve\r\nConnection: close\r\n"
        "Retry-After: 1\r\nContent-Type: application/json\r\nContent-Length: ",
        kBody.size(), "\r\n\r\n", kBody);
    shared.metrics->http_requests->Add({{"path", "other"}, {"code", "503"}}).Increment();
    beast::error_code ec;
    sock.non_blocking(true, ec);
    if (!ec) sock.write_some(net::buffer(kBusy), ec);
    sock.shutdown(net::ip::tcp::socket::shutdown_both, ec);
    sock.close(ec);
  }

  void Accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec,
                                                        net::ip::tcp::socket sock) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        // E.g. out of file descriptors: retry after a pause instead of spinning.
        SLOG(WARNING) << "http accept: " << ec.message();
        auto t = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(100));
        t->async_wait([this, t](beast::error_code) {
          if (acceptor.is_open()) Accept();
        });
        return;
      } else {
        beast::error_code ig;
        // Small writes (an SSE event) go out at once, not after the peer's delayed ACK.
        sock.set_option(net::ip::tcp::no_delay(true), ig);
        if (shared.opts.socket_send_buffer_bytes > 0) {
          sock.set_option(net::socket_base::send_buffer_size(shared.opts.socket_send_buffer_bytes), ig);
        }
        if (shared.open_connections.load() >= shared.opts.max_connections) {
          RefuseConnection(std::move(sock));
          Accept();
          return;
        }
        auto c = std::make_shared<HttpConnection>(std::move(sock), &shared);
        {
          std::lock_guard<std::mutex> l(mu);
          conns.erase(std::remove_if(conns.begin(), conns.end(),
                                     [](auto& w) { return w.expired(); }),
                      conns.end());
          conns.push_back(c);
        }
        c->Start();
      }
      Accept();
    });
  }
};

HttpServer::HttpServer(Service* service, ServerMetrics* metrics, HttpOptions opts)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared.service = service;
  impl_->shared.metrics = metrics;
  impl_->shared.opts = std::move(opts);
}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start() {
  Impl& im = *impl_;
  const HttpOptions& o = im.shared.opts;
  beast::error_code ec;
  auto addr = net::ip::make_address(o.host, ec);
  if (ec) return absl::InvalidArgumentError("--host: not an IP address: " + o.host);
  net::ip::tcp::endpoint ep(addr, static_cast<unsigned short>(o.port));
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError("HTTP: cannot listen on " + o.host + ":" +
                                  std::to_string(o.port) + ": " + ec.message());
  }
  port_ = im.acceptor.local_endpoint().port();
  im.work.emplace(im.ioc.get_executor());
  im.Accept();
  net::post(im.trim_strand, [&im] { im.TrimWhenIdle(); });
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    im.threads.emplace_back([&im, i] {
      NameThisThread("rwkvx-http-" + std::to_string(i));
      im.ioc.run();
    });
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  Impl& im = *impl_;
  if (im.threads.empty()) return;
  net::post(im.ioc, [&im] {
    beast::error_code ec;
    im.acceptor.close(ec);
  });
  net::post(im.trim_strand, [&im] { im.trim_timer.cancel(); });
  // Let responses in flight (e.g. the final events of a drain) reach their clients.
  absl::Time until = absl::Now() + absl::Seconds(3);
  while (im.shared.active_generations.load() > 0 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::vector<std::shared_ptr<HttpConnection>> live;
  {
    std::lock_guard<std::mutex> l(im.mu);
    for (auto& w : im.conns) {
      if (auto c = w.lock()) live.push_back(std::move(c));
    }
    im.conns.clear();
  }
  for (auto& c : live) c->Close();
  live.clear();
  im.work.reset();
  im.ioc.stop();
  for (auto& t : im.threads) t.join();
  im.threads.clear();
}

}  // namespace rwkvx
