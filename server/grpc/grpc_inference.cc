#include "server/grpc/grpc_inference.h"

#include <string>
#include <utility>
#include <vector>

#include "server/grpc/grpc_append.h"
#include "server/grpc/grpc_convert.h"
#include "server/grpc/grpc_generate.h"
#include "server/grpc/grpc_request.h"

namespace rwkvx {

namespace pb = ::rwkvx::v1;

namespace {

// Proto3 strings: empty = not given (the server picks a name).
std::optional<std::string> NameOrNone(const std::string& name) {
  if (name.empty()) return std::nullopt;
  return name;
}

}  // namespace

template <typename Start>
InferenceService::Unary* InferenceService::Async(Ctx* ctx, const char* method, Start start) {
  absl::Status st = Auth(ctx);
  if (!st.ok()) return Done(ctx, method, st);
  Unary* reactor = ctx->DefaultReactor();
  start(reactor);
  return reactor;
}

InferenceService::Writer* InferenceService::Generate(Ctx* ctx, const pb::GenerateRequest* req) {
  absl::Status auth = Auth(ctx);
  if (!auth.ok()) return Error("Generate", auth);
  GenerateParams p = GenerateParamsFromProto(*req, ctx->deadline());
  if (req->echo() && p.logprobs) {
    return Error("Generate", absl::InvalidArgumentError(
                                 "echo with logprobs is not supported (the prompt tokens' log-probabilities are not computed)"));
  }
  // The prompt as text for echo; ids are checked by the Service, so a failure here only
  // comes with a refused request.
  std::string echo;
  if (req->echo()) {
    if (p.prompt.text) {
      echo = *p.prompt.text;
    } else if (p.prompt.ids) {
      if (auto text = svc_->Detokenize(p.model, *p.prompt.ids); text.ok()) echo = std::move(*text);
    }
  }
  if (req->snapshot().empty() && !req->return_snapshot()) {
    auto streams = svc_->Generate(p);
    if (!streams.ok()) return Error("Generate", streams.status());
    auto* r = new GenerateReactor(&svc_->tokenizer(), metrics_, ctx->deadline());
    r->SetEcho(std::move(echo));
    r->Attach(std::move(streams->front()));
    return r;
  }
  // Client-held state: an ephemeral session from the snapshot (or fresh), generated
  // from; its new snapshot goes on the last event.
  auto* r = new GenerateReactor(&svc_->tokenizer(), metrics_, ctx->deadline());
  r->SetEcho(std::move(echo));
  std::optional<std::string> snapshot;
  if (!req->snapshot().empty()) snapshot = req->snapshot();
  svc_->GenerateFromSnapshot(
      p, std::move(snapshot),
      [r](absl::StatusOr<std::shared_ptr<ClientHeldGeneration>> gen) {
        if (!gen.ok()) return r->Fail(gen.status());
        r->Attach(std::move(*gen));
      });
  return r;
}

InferenceService::Writer* InferenceService::Chat(Ctx* ctx, const pb::ChatRequest* req) {
  absl::Status auth = Auth(ctx);
  if (!auth.ok()) return Error("Chat", auth);
  auto c = ChatParamsFromProto(*req, ctx->deadline());
  if (!c.ok()) return Error("Chat", c.status());
  auto streams = svc_->Generate(c->params);
  if (!streams.ok()) return Error("Chat", streams.status());
  auto* r = new GenerateReactor(&svc_->tokenizer(), metrics_, ctx->deadline(), "Chat");
  if (c->tools) r->SetTools();
  r->Attach(std::move(streams->front()));
  return r;
}

InferenceService::Unary* InferenceService::Tokenize(Ctx* ctx, const pb::TokenizeRequest* req,
                                                    pb::TokenizeResponse* resp) {
  absl::Status st = Auth(ctx);
  if (st.ok()) {
    auto ids = svc_->Tokenize(req->model(), req->text());
    if (ids.ok()) resp->mutable_token_ids()->Add(ids->begin(), ids->end());
    st = ids.status();
  }
  return Done(ctx, "Tokenize", st);
}

InferenceService::Unary* InferenceService::Detokenize(Ctx* ctx, const pb::DetokenizeRequest* req,
                                                      pb::DetokenizeResponse* resp) {
  absl::Status st = Auth(ctx);
  if (st.ok()) {
    auto bytes = svc_->Detokenize(
        req->model(), std::vector<int64_t>(req->token_ids().begin(), req->token_ids().end()));
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

InferenceService::Unary* InferenceService::ListModels(Ctx* ctx, const pb::ListModelsRequest*,
                                                      pb::ListModelsResponse* resp) {
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

InferenceService::Unary* InferenceService::CreateSession(Ctx* ctx, const pb::CreateSessionRequest* req,
                                                         pb::Session* resp) {
  return Async(ctx, "CreateSession", [&](Unary* reactor) {
    svc_->CreateSession(NameOrNone(req->session_id()), PromptFromProto(*req),
                        SessionDone(reactor, "CreateSession", resp), req->initial_state());
  });
}

InferenceService::Unary* InferenceService::AppendSession(Ctx* ctx, const pb::AppendSessionRequest* req,
                                                         pb::Session* resp) {
  return Async(ctx, "AppendSession", [&](Unary* reactor) {
    svc_->AppendToSession(req->session_id(), PromptFromProto(*req),
                          SessionDone(reactor, "AppendSession", resp));
  });
}

grpc::ServerWriteReactor<pb::AppendProgress>* InferenceService::AppendSessionStream(
    Ctx* ctx, const pb::AppendSessionRequest* req) {
  auto* r = new AppendReactor(metrics_);
  if (absl::Status st = Auth(ctx); !st.ok()) {
    r->Fail(st);
  } else {
    r->Start(svc_, req->session_id(), PromptFromProto(*req));
  }
  return r;
}

InferenceService::Unary* InferenceService::ForkSession(Ctx* ctx, const pb::ForkSessionRequest* req,
                                                       pb::Session* resp) {
  return Async(ctx, "ForkSession", [&](Unary* reactor) {
    svc_->ForkSession(req->session_id(), NameOrNone(req->new_session_id()),
                      SessionDone(reactor, "ForkSession", resp));
  });
}

InferenceService::Unary* InferenceService::SnapshotSession(Ctx* ctx,
                                                           const pb::SnapshotSessionRequest* req,
                                                           pb::SessionSnapshot* resp) {
  return Async(ctx, "SnapshotSession", [&](Unary* reactor) {
    svc_->SnapshotSession(req->session_id(), [this, reactor, resp](absl::StatusOr<std::string> b) {
      if (b.ok()) resp->set_snapshot(std::move(*b));
      Finish(reactor, "SnapshotSession", b.status());
    });
  });
}

InferenceService::Unary* InferenceService::RestoreSession(Ctx* ctx,
                                                          const pb::RestoreSessionRequest* req,
                                                          pb::Session* resp) {
  return Async(ctx, "RestoreSession", [&](Unary* reactor) {
    svc_->RestoreSession(NameOrNone(req->session_id()), req->snapshot(),
                         SessionDone(reactor, "RestoreSession", resp));
  });
}

InferenceService::Unary* InferenceService::ListSessions(Ctx* ctx, const pb::ListSessionsRequest*,
                                                        pb::ListSessionsResponse* resp) {
  return Async(ctx, "ListSessions", [&](Unary* reactor) {
    svc_->ListSessions([this, reactor, resp](std::vector<StoredSessionInfo> list) {
      for (const auto& i : list) FillSession(i, resp->add_sessions());
      Finish(reactor, "ListSessions", absl::OkStatus());
    });
  });
}

InferenceService::Unary* InferenceService::GetSession(Ctx* ctx, const pb::GetSessionRequest* req,
                                                      pb::Session* resp) {
  return Async(ctx, "GetSession", [&](Unary* reactor) {
    svc_->GetSession(req->session_id(), SessionDone(reactor, "GetSession", resp));
  });
}

InferenceService::Unary* InferenceService::DeleteSession(Ctx* ctx, const pb::DeleteSessionRequest* req,
                                                         pb::DeleteSessionResponse*) {
  return Async(ctx, "DeleteSession", [&](Unary* reactor) {
    svc_->DeleteSession(req->session_id(),
                        [this, reactor](absl::Status s) { Finish(reactor, "DeleteSession", s); });
  });
}

size_t InferenceService::max_receive_bytes() const {
  return std::min<size_t>(svc_->max_snapshot_bytes() + (size_t{4} << 20), size_t{2147483647});
}

::rwkvx::Service::SessionCallback InferenceService::SessionDone(Unary* reactor,
                                                               const char* method,
                                                               pb::Session* resp) {
  return [this, reactor, method, resp](absl::StatusOr<StoredSessionInfo> r) {
    if (r.ok()) FillSession(*r, resp);
    Finish(reactor, method, r.status());
  };
}

absl::Status InferenceService::Auth(Ctx* ctx) const {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string v = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  return CheckApiKey(keys_, v, KeyCarrier::kGrpcMetadata);
}

void InferenceService::Count(const char* method, grpc::StatusCode c) {
  metrics_->grpc_requests->Add({{"method", method}, {"code", std::to_string(static_cast<int>(c))}})
      .Increment();
}

InferenceService::Writer* InferenceService::Error(const char* method, const absl::Status& s) {
  grpc::Status gs = ToGrpc(s);
  Count(method, gs.error_code());
  return new ErrorWriter(gs);
}

void InferenceService::Finish(Unary* r, const char* method, const absl::Status& s) {
  grpc::Status gs = ToGrpc(s);
  Count(method, gs.error_code());
  r->Finish(gs);
}

InferenceService::Unary* InferenceService::Done(Ctx* ctx, const char* method, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  Finish(r, method, s);
  return r;
}

}  // namespace rwkvx
