#include "server/grpc_server.h"

#include <deque>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "rwkvx/v1/inference.grpc.pb.h"
#include "server/errors.h"
#include "server/grpc_request.h"
#include "server/http_server.h"
#include "server/log.h"

namespace rwkvx {
namespace {

namespace pb = ::rwkvx::v1;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(MapStatusCode(s.code()).grpc_code),
                      ClientMessage(s));
}

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

void FillSession(const StoredSessionInfo& i, pb::Session* out) {
  out->set_session_id(i.name);
  out->set_state_bytes(i.state_bytes);
  out->set_kv_tokens(i.kv_tokens);
  out->set_tokens_seen(i.tokens_seen);
  out->set_created_unix_ms(UnixMs(i.created));
  out->set_last_used_unix_ms(UnixMs(i.last_used));
  out->set_expires_unix_ms(UnixMs(i.expires));
  out->set_busy(i.busy);
  out->set_pending_tokens(i.pending_tokens);
  out->set_tier(SessionTierName(i.tier));
  out->set_saved(i.saved);
}

std::string NewSessionName(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%s%016x", prefix, rng());
}

// The optional prompt of CreateSession / AppendSession as token ids.
template <typename Req>
absl::StatusOr<std::vector<int32_t>> PromptOf(const Req& r, ::rwkvx::Service* svc) {
  std::vector<int32_t> out;
  if (r.has_text()) {
    auto ids = svc->Tokenize("", r.text());
    if (!ids.ok()) return ids.status();
    out = std::move(*ids);
  } else if (r.has_token_ids()) {
    for (int32_t id : r.token_ids().ids()) {
      if (id < 0 || id >= svc->model().vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is outside the vocabulary [0, ", svc->model().vocab, ")"));
      }
      out.push_back(id);
    }
  }
  if (static_cast<int64_t>(out.size()) > svc->limits().max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", out.size(),
                                                   " tokens; this server accepts at most ",
                                                   svc->limits().max_prompt_tokens));
  }
  return out;
}

GenerateParams ToParams(const pb::GenerateRequest& r, const grpc::CallbackServerContext* ctx) {
  return GenerateParamsFromProto(r, ctx->deadline());
}

// Streams one request's events. Lives until OnDone; the scheduler's notify reaches it
// through `link`, which OnDone clears under the same lock.
class GenerateReactor : public grpc::ServerWriteReactor<pb::GenerateResponse> {
 public:
  struct Link {
    std::mutex mu;
    GenerateReactor* r = nullptr;
  };
  GenerateReactor(std::shared_ptr<RequestStream> s, const Tokenizer* tok, ServerMetrics* m)
      : tok_(tok), metrics_(m), link_(std::make_shared<Link>()) {
    link_->r = this;
    if (s) Attach(std::move(s));
  }
  // Client-held state: the ephemeral session this request generates from, snapshot and
  // deleted at the end (the snapshot goes on the last event).
  void SetClientHeld(Scheduler* sched, std::string session) {
    sched_ = sched;
    client_session_ = std::move(session);
  }
  // Starts streaming `s` (any thread).
  // SetNotify runs the callback at once when events are already queued (a request the
  // scheduler refused or finished before we got here), and the callback takes link->mu:
  // so it must not be called with link->mu held (that self-deadlock hung the call until
  // its deadline). After SetNotify the reactor may already be finished and deleted: only
  // `link` is touched from then on.
  void Attach(std::shared_ptr<RequestStream> s) {
    std::shared_ptr<Link> link = link_;
    {
      std::lock_guard<std::mutex> l(link->mu);
      stream_ = s;
      if (cancelled_) s->Cancel();
    }
    s->SetNotify([link] {
      std::lock_guard<std::mutex> l(link->mu);
      if (link->r) link->r->PumpLocked();
    });
    std::lock_guard<std::mutex> l(link->mu);
    if (link->r) link->r->PumpLocked();
  }
  // Ends the call with `st` before any stream was attached (any thread).
  void Fail(const absl::Status& st) {
    std::lock_guard<std::mutex> l(link_->mu);
    if (finished_) return;
    finished_ = true;
    grpc::Status gs = ToGrpc(st);
    Count(gs.error_code());
    Finish(gs);
  }
  void Begin() {
    std::lock_guard<std::mutex> l(link_->mu);
    PumpLocked();
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(link_->mu);
    writing_ = false;
    if (!ok && stream_) stream_->Cancel();
    PumpLocked();
  }
  void OnCancel() override {
    std::lock_guard<std::mutex> l(link_->mu);
    cancelled_ = true;
    if (stream_) stream_->Cancel();
  }
  void OnDone() override {
    if (stream_) stream_->SetNotify(nullptr);
    {
      std::lock_guard<std::mutex> l(link_->mu);
      link_->r = nullptr;
    }
    delete this;
  }

  void PumpLocked() {
    if (writing_ || finished_ || !stream_) return;
    std::vector<GenerateEvent> evs;
    stream_->PopAll(&evs);
    for (auto& e : evs) pending_.push_back(std::move(e));
    if (pending_.empty()) return;
    resp_.Clear();
    bool final = false;
    GenerateEvent last;
    while (!pending_.empty()) {
      GenerateEvent& e = pending_.front();
      for (const auto& t : e.tokens) {
        pb::TokenInfo* ti = resp_.add_tokens();
        ti->set_token_id(t.token);
        ti->set_logprob(t.logprob);
        ti->set_token_bytes(std::string(tok_->TokenBytes(t.token)));
        for (const auto& a : t.top) {
          pb::TopLogprob* tl = ti->add_top_logprobs();
          tl->set_token_id(a.token);
          tl->set_logprob(a.logprob);
          tl->set_token_bytes(std::string(tok_->TokenBytes(a.token)));
        }
      }
      resp_.mutable_text()->append(e.text);
      if (e.final) {
        final = true;
        last = std::move(e);
      }
      pending_.pop_front();
      if (final) break;
    }
    if (!final) {
      writing_ = true;
      StartWrite(&resp_);
      return;
    }
    finished_ = true;
    if (last.finish == FinishReason::kError || last.finish == FinishReason::kCancelled) {
      if (sched_) sched_->DeleteSession(client_session_, [](absl::Status) {});
      absl::Status st = last.status.ok() ? absl::InternalError("failed") : last.status;
      grpc::Status gs = ToGrpc(st);
      Count(gs.error_code());
      Finish(gs);
      return;
    }
    resp_.set_finish_reason(FinishReasonName(last.finish));
    resp_.mutable_usage()->set_prompt_tokens(last.prompt_tokens);
    resp_.mutable_usage()->set_completion_tokens(last.completion_tokens);
    resp_.mutable_usage()->set_total_tokens(last.prompt_tokens + last.completion_tokens);
    resp_.mutable_usage()->set_cached_tokens(last.cached_tokens);
    if (sched_) {
      // The new snapshot goes on this last event (the callback runs on the loop thread;
      // the reactor lives until Finish).
      std::shared_ptr<Link> link = link_;
      sched_->SnapshotSession(client_session_, /*remove=*/true, [link](absl::StatusOr<std::string> b) {
        std::lock_guard<std::mutex> l(link->mu);
        GenerateReactor* r = link->r;
        if (!r) return;
        if (!b.ok()) {
          grpc::Status gs = ToGrpc(b.status());
          r->Count(gs.error_code());
          r->Finish(gs);
          return;
        }
        r->resp_.set_snapshot(std::move(*b));
        r->Count(grpc::StatusCode::OK);
        r->StartWriteAndFinish(&r->resp_, grpc::WriteOptions(), grpc::Status::OK);
      });
      return;
    }
    Count(grpc::StatusCode::OK);
    StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
  }

 private:
  void Count(grpc::StatusCode c) {
    metrics_->grpc_requests->Add({{"method", "Generate"}, {"code", std::to_string(static_cast<int>(c))}})
        .Increment();
  }
  std::shared_ptr<RequestStream> stream_;
  const Tokenizer* tok_;
  ServerMetrics* metrics_;
  std::shared_ptr<Link> link_;
  std::deque<GenerateEvent> pending_;
  pb::GenerateResponse resp_;
  bool writing_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  Scheduler* sched_ = nullptr;
  std::string client_session_;
};

class ErrorWriter : public grpc::ServerWriteReactor<pb::GenerateResponse> {
 public:
  explicit ErrorWriter(grpc::Status s) { Finish(s); }
  void OnDone() override { delete this; }
};

class InferenceImpl final : public pb::Inference::CallbackService {
 public:
  InferenceImpl(::rwkvx::Service* s, ServerMetrics* m, const ApiKeys* keys)
      : svc_(s), metrics_(m), keys_(keys) {}

  grpc::ServerWriteReactor<pb::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const pb::GenerateRequest* req) override {
    absl::Status auth = Auth(ctx);
    if (!auth.ok()) return Error("Generate", auth);
    if (!req->snapshot().empty() || req->return_snapshot()) return ClientHeld(ctx, req);
    auto streams = svc_->Generate(ToParams(*req, ctx));
    if (!streams.ok()) return Error("Generate", streams.status());
    auto* r = new GenerateReactor(std::move(streams->front()), &svc_->tokenizer(), metrics_);
    r->Begin();
    return r;
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const pb::TokenizeRequest* req,
                                     pb::TokenizeResponse* resp) override {
    absl::Status st = Auth(ctx);
    if (st.ok()) {
      auto ids = svc_->Tokenize(req->model(), req->text());
      if (ids.ok()) resp->mutable_token_ids()->Add(ids->begin(), ids->end());
      st = ids.status();
    }
    return Done(ctx, "Tokenize", st);
  }

  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const pb::DetokenizeRequest* req,
                                       pb::DetokenizeResponse* resp) override {
    absl::Status st = Auth(ctx);
    if (st.ok()) {
      auto bytes = svc_->Detokenize(req->model(), std::vector<int64_t>(req->token_ids().begin(), req->token_ids().end()));
      if (bytes.ok()) {
        resp->set_raw(*bytes);
        StreamDecoder d(&svc_->tokenizer());
        std::string text;
        for (int32_t id : req->token_ids()) text += d.Push(id);
        text += d.Flush();
        resp->set_text(text);
      }
      st = bytes.status();
    }
    return Done(ctx, "Detokenize", st);
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx, const pb::ListModelsRequest*,
                                       pb::ListModelsResponse* resp) override {
    absl::Status st = Auth(ctx);
    if (st.ok()) {
      const ModelDescription& m = svc_->model();
      pb::ModelInfo* mi = resp->add_models();
      mi->set_id(m.id);
      mi->set_description(m.description);
      mi->set_tokenizer(m.tokenizer);
      mi->set_vocab_size(m.vocab);
      mi->set_backend(m.backend);
      mi->set_random_weights(m.random_weights);
    }
    return Done(ctx, "ListModels", st);
  }

  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx,
                                          const pb::CreateSessionRequest* req,
                                          pb::Session* resp) override {
    absl::Status st = Auth(ctx);
    std::string name = req->session_id();
    if (st.ok() && name.size() > 128) st = absl::InvalidArgumentError("session_id is longer than 128 bytes");
    if (!st.ok()) return Done(ctx, "CreateSession", st);
    if (name.empty()) {
      static thread_local std::mt19937_64 rng{std::random_device{}()};
      name = absl::StrFormat("sess-%016x", rng());
    }
    auto toks = PromptOf(*req, svc_);
    if (!toks.ok()) return Done(ctx, "CreateSession", toks.status());
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().CreateSession(name, std::move(*toks), false, InfoDone(reactor, "CreateSession", resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* AppendSession(grpc::CallbackServerContext* ctx,
                                          const pb::AppendSessionRequest* req, pb::Session* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "AppendSession", st);
    auto toks = PromptOf(*req, svc_);
    if (!toks.ok()) return Done(ctx, "AppendSession", toks.status());
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().AppendToSession(req->session_id(), std::move(*toks), InfoDone(reactor, "AppendSession", resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* ctx,
                                        const pb::ForkSessionRequest* req, pb::Session* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "ForkSession", st);
    std::string name = req->new_session_id().empty() ? NewSessionName("sess-") : req->new_session_id();
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().ForkSession(req->session_id(), name, InfoDone(reactor, "ForkSession", resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* SnapshotSession(grpc::CallbackServerContext* ctx,
                                            const pb::SnapshotSessionRequest* req,
                                            pb::SessionSnapshot* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "SnapshotSession", st);
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().SnapshotSession(req->session_id(), false,
                                      [this, reactor, resp](absl::StatusOr<std::string> b) {
                                        if (b.ok()) resp->set_snapshot(std::move(*b));
                                        Finish(reactor, "SnapshotSession", b.status());
                                      });
    return reactor;
  }

  grpc::ServerUnaryReactor* RestoreSession(grpc::CallbackServerContext* ctx,
                                           const pb::RestoreSessionRequest* req, pb::Session* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "RestoreSession", st);
    std::string name = req->session_id().empty() ? NewSessionName("sess-") : req->session_id();
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().RestoreSession(name, req->snapshot(), false, InfoDone(reactor, "RestoreSession", resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx, const pb::ListSessionsRequest*,
                                         pb::ListSessionsResponse* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "ListSessions", st);
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().ListSessions([this, reactor, resp](std::vector<StoredSessionInfo> list) {
      for (const auto& i : list) FillSession(i, resp->add_sessions());
      Finish(reactor, "ListSessions", absl::OkStatus());
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* ctx, const pb::GetSessionRequest* req,
                                       pb::Session* resp) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "GetSession", st);
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().GetSession(req->session_id(), InfoDone(reactor, "GetSession", resp));
    return reactor;
  }

  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* ctx,
                                          const pb::DeleteSessionRequest* req,
                                          pb::DeleteSessionResponse*) override {
    absl::Status st = Auth(ctx);
    if (!st.ok()) return Done(ctx, "DeleteSession", st);
    auto* reactor = ctx->DefaultReactor();
    svc_->scheduler().DeleteSession(req->session_id(), [this, reactor](absl::Status s) {
      Finish(reactor, "DeleteSession", s);
    });
    return reactor;
  }

 private:
  Scheduler::InfoCallback InfoDone(grpc::ServerUnaryReactor* reactor, const char* method, pb::Session* resp) {
    return [this, reactor, method, resp](absl::StatusOr<StoredSessionInfo> r) {
      if (r.ok()) FillSession(*r, resp);
      Finish(reactor, method, r.status());
    };
  }

  // Generate with client-held state: an ephemeral session from the snapshot (or fresh),
  // generated from, then snapshot onto the last event and deleted.
  grpc::ServerWriteReactor<pb::GenerateResponse>* ClientHeld(grpc::CallbackServerContext* ctx,
                                                             const pb::GenerateRequest* req) {
    if (!req->session_id().empty()) {
      return Error("Generate", absl::InvalidArgumentError("give session_id or snapshot, not both"));
    }
    GenerateParams p = ToParams(*req, ctx);
    std::string session = NewSessionName("client-state-");
    p.session_id = session;
    auto* r = new GenerateReactor(nullptr, &svc_->tokenizer(), metrics_);
    r->SetClientHeld(&svc_->scheduler(), session);
    ::rwkvx::Service* svc = svc_;
    auto start = [r, svc, p, session](absl::StatusOr<StoredSessionInfo> info) {
      if (!info.ok()) return r->Fail(info.status());
      auto streams = svc->Generate(p);
      if (!streams.ok()) {
        svc->scheduler().DeleteSession(session, [](absl::Status) {});
        return r->Fail(streams.status());
      }
      r->Attach(std::move(streams->front()));
    };
    if (!req->snapshot().empty()) svc_->scheduler().RestoreSession(session, req->snapshot(), true, start);
    else svc_->scheduler().CreateSession(session, {}, true, start);
    return r;
  }

  absl::Status Auth(grpc::CallbackServerContext* ctx) const {
    if (!keys_ || !keys_->Required()) return absl::OkStatus();
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    std::string v = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
    if (keys_->Allows(v)) return absl::OkStatus();
    return absl::UnauthenticatedError("a valid API key is required (metadata authorization: Bearer <key>)");
  }

  void Count(const char* method, grpc::StatusCode c) {
    metrics_->grpc_requests->Add({{"method", method}, {"code", std::to_string(static_cast<int>(c))}})
        .Increment();
  }

  grpc::ServerWriteReactor<pb::GenerateResponse>* Error(const char* method, const absl::Status& s) {
    grpc::Status gs = ToGrpc(s);
    Count(method, gs.error_code());
    return new ErrorWriter(gs);
  }

  void Finish(grpc::ServerUnaryReactor* r, const char* method, const absl::Status& s) {
    grpc::Status gs = ToGrpc(s);
    Count(method, gs.error_code());
    r->Finish(gs);
  }

  grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const char* method,
                                 const absl::Status& s) {
    auto* r = ctx->DefaultReactor();
    Finish(r, method, s);
    return r;
  }

  ::rwkvx::Service* svc_;
  ServerMetrics* metrics_;
  const ApiKeys* keys_;

 public:
  size_t max_snapshot_bytes() const { return svc_->scheduler().options().max_snapshot_bytes; }
};

}  // namespace

struct GrpcServer::Impl {
  std::unique_ptr<InferenceImpl> service;
  std::unique_ptr<grpc::Server> server;
};

GrpcServer::GrpcServer(Service* service, ServerMetrics* metrics, const ApiKeys* api_keys)
    : impl_(std::make_unique<Impl>()) {
  impl_->service = std::make_unique<InferenceImpl>(service, metrics, api_keys);
}

GrpcServer::~GrpcServer() { Stop(); }

absl::StatusOr<int> GrpcServer::Start(const std::string& host, int port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder b;
  int selected = 0;
  std::string addr = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                     std::to_string(port);
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &selected);
  b.RegisterService(impl_->service.get());
  // Snapshots travel in one message (RestoreSession, Generate's snapshot): accept up to
  // --max-snapshot-bytes plus room for the rest of the request.
  b.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(
      impl_->service->max_snapshot_bytes() + (size_t{4} << 20), size_t{2147483647})));
  impl_->server = b.BuildAndStart();
  if (!impl_->server || selected == 0) {
    impl_->server.reset();
    return absl::UnavailableError("gRPC: cannot listen on " + addr);
  }
  if (auto* h = impl_->server->GetHealthCheckService()) {
    h->SetServingStatus(true);
    h->SetServingStatus("rwkvx.v1.Inference", true);
  }
  return selected;
}

void GrpcServer::SetNotServing() {
  if (!impl_->server) return;
  if (auto* h = impl_->server->GetHealthCheckService()) {
    h->SetServingStatus(false);
    h->SetServingStatus("rwkvx.v1.Inference", false);
  }
}

void GrpcServer::Stop() {
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace rwkvx
