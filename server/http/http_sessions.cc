// HttpConnection: the session API over HTTP (docs/SESSIONS.md), routed by the table in
// http_connection.cc.
//   POST   /v1/sessions                    {"session_id"?, "prompt"?}   create
//   GET    /v1/sessions                                                 list
//   GET    /v1/sessions/{id}                                            get
//   DELETE /v1/sessions/{id}                                            delete
//   POST   /v1/sessions/{id}/append        {"prompt": text | [ids], "stream"?}
//                                          append, no generation; "stream": SSE progress
//   POST   /v1/sessions/{id}/completions   a /v1/completions body (SSE with "stream")
//   POST   /v1/sessions/{id}/fork          {"session_id"?}              fork
//   GET    /v1/sessions/{id}/snapshot      -> application/octet-stream
//   PUT    /v1/sessions/{id}/snapshot      application/octet-stream -> restore as {id}
//   POST   /v1/snapshot/completions        a completions body + "snapshot" (base64, optional)
//                                          -> the completion + "snapshot" (client-held state)
// Only JSON <-> Service calls here; the Service's callbacks post back to this strand.
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "server/errors.h"
#include "server/http/http_connection.h"
#include "server/random_id.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

double UnixS(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

json SessionJson(const StoredSessionInfo& i) {
  return {{"id", i.name},
          {"object", "session"},
          {"tokens", i.tokens_seen + i.pending_tokens},
          {"tokens_seen", i.tokens_seen},
          {"pending_tokens", i.pending_tokens},
          {"bytes", i.state_bytes},
          {"kv_tokens", i.kv_tokens},
          {"tier", SessionTierName(i.tier)},
          {"saved", i.saved},
          {"busy", i.busy},
          {"created", UnixS(i.created)},
          {"last_used", UnixS(i.last_used)},
          {"expires", UnixS(i.expires)}};
}

// "prompt": absent, a string, or an array of integers (the Service checks the rest).
absl::StatusOr<PromptInput> PromptOf(const json& j) {
  PromptInput in;
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) return in;
  if (it->is_string()) {
    in.text = it->get<std::string>();
  } else if (it->is_array()) {
    in.ids.emplace();
    for (const auto& v : *it) {
      if (!v.is_number_integer()) {
        return absl::InvalidArgumentError("'prompt' token ids must be integers");
      }
      in.ids->push_back(v.get<int64_t>());
    }
  } else {
    return absl::InvalidArgumentError("'prompt' must be a string or an array of token ids");
  }
  return in;
}

// "session_id": absent (the server picks one) or a string.
absl::StatusOr<std::optional<std::string>> OptionalName(const json& j) {
  auto it = j.find("session_id");
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return absl::InvalidArgumentError("'session_id' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

}  // namespace

Service::SessionCallback HttpConnection::InfoReply() {
  return Later<absl::StatusOr<StoredSessionInfo>>(
      [](HttpConnection& self, absl::StatusOr<StoredSessionInfo> r) {
        self.SendJson(r.ok() ? absl::StatusOr<std::string>(SessionJson(*r).dump()) : r.status());
      });
}

void HttpConnection::ListSessions(const PathParams&) {
  shared_->service->ListSessions(
      Later<std::vector<StoredSessionInfo>>([](HttpConnection& self, std::vector<StoredSessionInfo> list) {
        json data = json::array();
        for (const auto& i : list) data.push_back(SessionJson(i));
        self.SendJson(json{{"object", "list"}, {"data", data}}.dump());
      }));
}

void HttpConnection::CreateSession(const PathParams&) {
  auto j = ParseJsonBody(req_.body(), shared_->opts.max_json_depth, /*allow_empty=*/true);
  if (!j.ok()) return SendError(j.status());
  auto name = OptionalName(*j);
  if (!name.ok()) return SendError(name.status());
  auto prompt = PromptOf(*j);
  if (!prompt.ok()) return SendError(prompt.status());
  std::string initial;
  if (auto it = j->find("initial_state"); it != j->end() && !it->is_null()) {
    if (!it->is_string()) return SendError(absl::InvalidArgumentError("'initial_state' must be a string"));
    initial = it->get<std::string>();
  }
  shared_->service->CreateSession(std::move(*name), std::move(*prompt), InfoReply(), initial);
}

void HttpConnection::GetSession(const PathParams& p) {
  shared_->service->GetSession(p[0], InfoReply());
}

void HttpConnection::DeleteSession(const PathParams& p) {
  shared_->service->DeleteSession(
      p[0], Later<absl::Status>([id = p[0]](HttpConnection& self, absl::Status s) {
        if (!s.ok()) return self.SendError(s);
        self.SendJson(json{{"id", id}, {"object", "session"}, {"deleted", true}}.dump());
      }));
}

void HttpConnection::AppendSession(const PathParams& p) {
  auto j = ParseJsonBody(req_.body(), shared_->opts.max_json_depth, /*allow_empty=*/false);
  if (!j.ok()) return SendError(j.status());
  auto prompt = PromptOf(*j);
  if (!prompt.ok()) return SendError(prompt.status());
  auto stream = j->find("stream");
  if (stream != j->end() && !stream->is_null() && !stream->is_boolean()) {
    return SendError(absl::InvalidArgumentError("'stream' must be a boolean"));
  }
  if (stream != j->end() && stream->is_boolean() && stream->get<bool>()) {
    return StreamAppend(p[0], std::move(*prompt));
  }
  shared_->service->AppendToSession(p[0], std::move(*prompt), InfoReply());
}

// A streamed append. The 200 head goes out with the first progress event (fed 0: the
// session took the tokens), so an append refused at once (unknown session, bad prompt,
// busy) still gets its plain error status. Writes are serialized: one in flight, the rest
// gathered in `pending`.
struct HttpConnection::AppendStream {
  std::shared_ptr<AppendControl> control;
  bool head_sent = false;
  bool writing = false;
  bool finishing = false;  // the last event is written or being written
  int64_t total = 0;
  std::string pending, inflight;
};

void HttpConnection::StreamAppend(std::string name, PromptInput prompt) {
  append_ = std::make_shared<AppendStream>();
  using Fed = std::pair<int64_t, int64_t>;
  auto progress = Later<Fed>([](HttpConnection& self, Fed f) {
    if (!self.append_) return;
    self.append_->total = f.second;
    self.AppendWrite(absl::StrCat("data: ", json{{"tokens_fed", f.first}, {"tokens_total", f.second}}.dump(), "\n\n"),
                     false);
  });
  append_->control = std::make_shared<AppendControl>(
      [progress](int64_t fed, int64_t total) { progress(Fed(fed, total)); });
  stream_.expires_never();
  WatchDisconnect();
  shared_->service->AppendToSession(
      std::move(name), std::move(prompt),
      Later<absl::StatusOr<StoredSessionInfo>>(
          [](HttpConnection& self, absl::StatusOr<StoredSessionInfo> r) { self.EndAppend(std::move(r)); }),
      append_->control);
}

void HttpConnection::CancelAppend() {
  if (append_) append_->control->Cancel();
}

void HttpConnection::EndAppend(absl::StatusOr<StoredSessionInfo> r) {
  if (!append_) return;
  if (client_gone_ || closed_) {
    append_.reset();
    DoClose();
    return;
  }
  if (!append_->head_sent && !append_->writing) {
    // Refused before any progress: a plain error response.
    append_.reset();
    if (watching_) {
      beast::error_code ig;
      stream_.socket().cancel(ig);  // OnWritten resumes reading once the watch ends
    }
    return r.ok() ? SendJson(SessionJson(*r).dump()) : SendError(r.status());
  }
  const int64_t total = append_->total;
  AppendWrite(r.ok() ? absl::StrCat("data: ",
                                    json{{"tokens_fed", total}, {"tokens_total", total},
                                         {"session", SessionJson(*r)}}.dump(),
                                    "\n\ndata: [DONE]\n\n")
                     : OpenAiResponder::StreamError(OpenAiErrorJson(r.status())),
              true);
}

void HttpConnection::AppendWrite(std::string events, bool last) {
  AppendStream& a = *append_;
  if (client_gone_ || closed_ || a.finishing) return;
  if (!a.head_sent) {
    Count(200);
    a.pending = SseHeaders();
    a.head_sent = true;
  }
  absl::StrAppend(&a.pending, absl::StrFormat("%x\r\n", events.size()), events, "\r\n");
  if (last) {
    a.pending += "0\r\n\r\n";
    a.finishing = true;
  }
  FlushAppend();
}

void HttpConnection::FlushAppend() {
  AppendStream& a = *append_;
  if (a.writing || a.pending.empty()) return;
  a.inflight.swap(a.pending);
  a.pending.clear();
  a.writing = true;
  net::async_write(stream_.socket(), net::buffer(a.inflight),
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnAppendWritten(ec); });
}

void HttpConnection::OnAppendWritten(beast::error_code ec) {
  if (!append_) return;
  AppendStream& a = *append_;
  a.writing = false;
  a.inflight.clear();
  if (ec) {
    client_gone_ = true;
    CancelAppend();  // EndAppend closes once the append stopped
    return;
  }
  if (!a.pending.empty()) return FlushAppend();
  if (a.finishing) {
    append_.reset();
    ResumeAfterStream();
  }
}

void HttpConnection::SessionCompletions(const PathParams& p) {
  StartGenerate(ApiKind::kCompletion, p[0]);
}

void HttpConnection::ForkSession(const PathParams& p) {
  auto j = ParseJsonBody(req_.body(), shared_->opts.max_json_depth, /*allow_empty=*/true);
  if (!j.ok()) return SendError(j.status());
  auto name = OptionalName(*j);
  if (!name.ok()) return SendError(name.status());
  shared_->service->ForkSession(p[0], std::move(*name), InfoReply());
}

void HttpConnection::GetSnapshot(const PathParams& p) {
  shared_->service->SnapshotSession(
      p[0], Later<absl::StatusOr<std::string>>([](HttpConnection& self, absl::StatusOr<std::string> b) {
        if (b.ok()) self.Send(200, "application/octet-stream", std::move(*b));
        else self.SendError(b.status());
      }));
}

void HttpConnection::PutSnapshot(const PathParams& p) {
  shared_->service->RestoreSession(p[0], std::move(req_.body()), InfoReply());
}

// One /v1/snapshot/completions request: the Service's client-held generation and the
// response body built from its events.
struct ClientHeldCall {
  std::shared_ptr<ClientHeldGeneration> gen;
  std::unique_ptr<OpenAiResponder> responder;
  bool done = false;
};

void HttpConnection::ClientHeldCompletions(const PathParams&) {
  Service& svc = *shared_->service;
  const int depth = shared_->opts.max_json_depth;
  auto j = ParseJsonBody(req_.body(), depth, /*allow_empty=*/false);
  if (!j.ok()) return SendError(j.status());
  std::optional<std::string> snapshot;
  if (auto it = j->find("snapshot"); it != j->end() && !it->is_null()) {
    std::string bytes;
    if (!it->is_string() || !absl::Base64Unescape(it->get<std::string>(), &bytes)) {
      return SendError(absl::InvalidArgumentError("'snapshot' must be a base64 string"));
    }
    snapshot = std::move(bytes);
    j->erase(it);
  }
  auto parsed = ParseOpenAiRequest(ApiKind::kCompletion, j->dump(), depth);
  if (!parsed.ok()) return SendError(parsed.status());
  if (parsed->stream) {
    return SendError(absl::InvalidArgumentError(
        "'stream' is not supported with client-held state; use /v1/sessions/{id}/completions"));
  }
  GenerateParams& params = parsed->params;
  params.request_id = RandomId("cmpl-");
  auto call = std::make_shared<ClientHeldCall>();
  call->responder = std::make_unique<OpenAiResponder>(
      ApiKind::kCompletion, params.request_id, svc.model().id,
      static_cast<int64_t>(absl::ToUnixSeconds(absl::Now())), &svc.tokenizer(), 1,
      params.logprobs, false);
  using Started = absl::StatusOr<std::shared_ptr<ClientHeldGeneration>>;
  svc.GenerateFromSnapshot(
      params, std::move(snapshot), Later<Started>([call](HttpConnection& self, Started gen) {
        if (!gen.ok()) return self.SendError(gen.status());
        call->gen = std::move(*gen);
        auto pump = self.Later<bool>([call](HttpConnection& c, bool) { c.PumpClientHeld(call); });
        call->gen->stream()->SetNotify([pump] { pump(true); });
        self.PumpClientHeld(call);
      }));
}

void HttpConnection::PumpClientHeld(std::shared_ptr<ClientHeldCall> call) {
  if (call->done) return;
  std::vector<GenerateEvent> evs;
  call->gen->stream()->PopAll(&evs);
  for (auto& ev : evs) {
    call->responder->Add(0, ev);
    if (!ev.final) continue;
    call->done = true;
    call->gen->stream()->SetNotify(nullptr);
    call->gen->Finish(ev, Later<absl::StatusOr<std::string>>(
                              [call](HttpConnection& self, absl::StatusOr<std::string> b) {
                                if (!b.ok()) return self.SendError(b.status());
                                json body = json::parse(call->responder->Body(), nullptr, false);
                                body["snapshot"] = absl::Base64Escape(*b);
                                self.Send(200, "application/json",
                                          body.dump(-1, ' ', false, json::error_handler_t::replace));
                              }));
    return;
  }
}

}  // namespace rwkvx
