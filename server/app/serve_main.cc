// rwkvx::ServeMain: `rwkvx serve`. Builds the parts from the flags (builders.h), wires the
// scheduler, service and frontends, and waits for SIGTERM/SIGINT to drain (SIGHUP re-reads
// --api-key-file). Runs on the main thread; owns every server object, destroyed in
// reverse order.
#include "server/app/serve_main.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/warmup.h"
#include "server/app/builders.h"
#include "server/app/serve_flags.h"
#include "server/grpc/grpc_server.h"
#include "server/http/http_server.h"
#include "server/initial_states.h"
#include "server/log.h"
#include "server/metrics/metrics.h"
#include "server/scheduling/scheduler.h"
#include "server/service/service.h"

namespace rwkvx {
namespace {

// Shutdown signals reach the main thread through a self-pipe: a process-wide handler
// (whatever thread the kernel picks, e.g. one of OpenBLAS's) writes the signal number.
int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &b, 1);
  (void)ignored;
}

void InstallSignalHandlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);  // re-read --api-key-file
  signal(SIGPIPE, SIG_IGN);
}

// Waits up to `timeout_ms` (-1 = forever) for a signal; returns it, or 0.
int WaitSignal(int timeout_ms) {
  struct pollfd p = {g_signal_pipe[0], POLLIN, 0};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    unsigned char b = 0;
    if (read(g_signal_pipe[0], &b, 1) == 1) return b;
    return 0;
  }
}

// Written to the signal pipe by the scheduler's fatal callback: the backend is lost.
constexpr int kBackendLost = 255;
constexpr int kBackendLostExit = 3;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "rwkvx serve: %s\n", std::string(s.message()).c_str());
  return 2;
}

// {"http_port": .., "grpc_port": ..}, written to a temporary name and renamed into place.
void WritePortFile(const std::string& path, int http_port, int grpc_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "{\"http_port\": " << http_port << ", \"grpc_port\": " << grpc_port << "}\n";
  }
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace

int ServeMain(int argc, char** argv) {
  ServeFlags f;
  if (auto s = ParseServeFlags(argc, argv, &f, environ); !s.ok()) return Fail(s);
  if (f.help) {
    std::fputs(ServeHelp().c_str(), stdout);
    return 0;
  }
  if (auto s = CheckServeFlags(f); !s.ok()) return Fail(s);
  auto initial_keys = ApiKeysFromFlags(f);
  if (!initial_keys.ok()) return Fail(initial_keys.status());
  ApiKeys api_keys(std::move(*initial_keys));
  InstallSignalHandlers();
  if (!f.from_env.empty()) {  // names only: a value may be a key
    std::string names;
    for (const std::string& n : f.from_env) names += (names.empty() ? "" : ", ") + n;
    SLOG(INFO) << "flags from the environment (RWKVX_FLAG_*): " << names;
  }

  auto served = BuildServedModel(f);
  if (!served.ok()) return Fail(served.status());
  ApplyModelLimits(*served->model, &f);
  auto tok = BuildTokenizer(f, *served->model);
  if (!tok.ok()) return Fail(tok.status());
  auto initial_states = BuildInitialStates(f, *served->model);
  if (!initial_states.ok()) return Fail(initial_states.status());
  auto backend = BuildBackend(f, served->model);
  if (!backend.ok()) return Fail(backend.status());
  const std::string backend_name = (*backend)->Name();
  ResolveBatchTokens(backend_name, &f);
  ApplyPrefixCacheDefault((*backend)->Memory(), &f);
  if (f.cuda_warmup && backend_name == "cuda") {  // before readiness: no request pays for it
    auto w = WarmUp(**backend, f.max_batch_tokens, f.max_sessions);
    if (w.ok()) {
      SLOG(INFO) << "warm-up: " << w->steps << " steps (a " << f.max_batch_tokens << "-token prefill, decode steps of up to "
                 << w->sessions << " sessions) in " << absl::StrFormat("%.2f", w->seconds) << " s [--cuda-warmup]";
    } else if (!(*backend)->Healthy()) {
      return Fail(w.status());
    } else {
      SLOG(WARNING) << "warm-up stopped: " << w.status() << " (serving anyway; the first requests pay for it)";
    }
  }

  ServerMetrics metrics;
  signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the session write (EFBIG), not us
  SchedulerTestingOptions testing;
  testing.session_write_pause_ms = f.testing.session_write_pause_ms;
  testing.session_write_gate = f.testing.session_write_gate;
  testing.fail_step_after = f.testing.fail_step_after;
  testing.replica_host = f.testing.replica_host;
  const SchedulerOptions so = SchedulerOptionsFromFlags(f);
  SLOG(INFO) << "stream writer: " << (so.stream_writer ? "on" : "off") << " (" << std::thread::hardware_concurrency()
             << " hardware threads) [--stream-writer " << f.stream_writer << "]";
  SLOG(INFO) << "overlap steps: " << (so.overlap_steps ? "on" : "off")
             << (so.overlap_steps ? " (the loop's host work runs while a step is on the device)" : "")
             << " [--overlap-steps " << f.overlap_steps << "]";
  Scheduler scheduler(std::move(*backend), tok->get(), so, &metrics, testing);
  scheduler.SetFatalCallback([] { OnSignal(kBackendLost); });
  if (auto s = scheduler.OpenSessionDir(); !s.ok()) return Fail(s);
  ModelDescription described = DescribeModel(*served, **tok, backend_name);
  described.initial_states = (*initial_states)->Names();
  Service service(&scheduler, tok->get(), std::move(described), ServiceLimitsFromFlags(f));
  service.SetInitialStates(initial_states->get());
  scheduler.Start();

  HttpServer http(&service, &metrics, HttpOptionsFromFlags(f, &api_keys));
  if (auto s = http.Start(); !s.ok()) return Fail(s);
  SLOG(INFO) << "HTTP listening on " << f.host << ":" << http.port();

  GrpcServer grpc(&service, &metrics, &api_keys);
  int grpc_port = -1;
  if (f.grpc_port >= 0) {
    auto p = grpc.Start(f.host, f.grpc_port);
    if (!p.ok()) return Fail(p.status());
    grpc_port = *p;
    SLOG(INFO) << "gRPC listening on " << f.host << ":" << grpc_port;
  }
  if (!f.port_file.empty()) WritePortFile(f.port_file, http.port(), grpc_port);
  metrics.ready->Set(1);
  SLOG(INFO) << "ready: serving '" << served->name << "' on " << backend_name;

  int sig = 0;
  while ((sig = WaitSignal(-1)) == SIGHUP) ReloadApiKeys(f, &api_keys);
  const bool lost = sig == kBackendLost;
  SLOG(INFO) << (lost ? "backend lost" : sig == SIGTERM ? "received SIGTERM" : "received SIGINT")
             << ": draining (grace " << f.drain_grace_s << "s); readiness is now false";
  scheduler.BeginDrain(absl::Seconds(f.drain_grace_s));
  grpc.SetNotServing();
  absl::Time until = absl::Now() + absl::Seconds(f.drain_grace_s) + absl::Seconds(5);
  while (!scheduler.WaitIdle(absl::Milliseconds(100)) && absl::Now() < until) {
    if (const int again = WaitSignal(0); again == SIGHUP) {
      ReloadApiKeys(f, &api_keys);
    } else if (again != 0) {
      SLOG(WARNING) << "second signal: ending running requests now";
      scheduler.BeginDrain(absl::ZeroDuration());
    }
  }
  SLOG(INFO) << "drained; stopping";
  scheduler.Stop();
  http.Stop();
  grpc.Stop();
  SLOG(INFO) << "stopped";
  return lost ? kBackendLostExit : 0;  // non-zero: the orchestrator restarts us
}

}  // namespace rwkvx
