// HttpConnection: the session API over HTTP (docs/SESSIONS.md).
//   POST   /v1/sessions                    {"session_id"?, "prompt"?}   create
//   GET    /v1/sessions                                                 list
//   GET    /v1/sessions/{id}                                            get
//   DELETE /v1/sessions/{id}                                            delete
//   POST   /v1/sessions/{id}/append        {"prompt": text | [ids]}     append, no generation
//   POST   /v1/sessions/{id}/completions   a /v1/completions body (SSE with "stream")
//   POST   /v1/sessions/{id}/fork          {"session_id"?}              fork
//   GET    /v1/sessions/{id}/snapshot      -> application/octet-stream
//   PUT    /v1/sessions/{id}/snapshot      application/octet-stream -> restore as {id}
//   POST   /v1/snapshot/completions        a completions body + "snapshot" (base64, optional)
//                                          -> the completion + "snapshot" (client-held state)
// Scheduler callbacks run on its loop thread; they only post back to this strand.
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "server/errors.h"
#include "server/http_connection.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

constexpr std::string_view kPrefix = "/v1/sessions";
constexpr std::string_view kClientHeld = "/v1/snapshot/completions";

std::string NewName(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%s%016x", prefix, rng());
}

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

absl::StatusOr<json> ParseBody(const std::string& body, int max_depth, bool allow_empty) {
  if (body.empty() && allow_empty) return json::object();
  if (auto s = CheckJsonDepth(body, max_depth); !s.ok()) return s;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  return j;
}

// "prompt": a string or an array of token ids -> token ids (absent = none).
absl::StatusOr<std::vector<int32_t>> PromptTokens(const json& j, Service& svc) {
  std::vector<int32_t> out;
  auto it = j.find("prompt");
  if (it == j.end() || it->is_null()) return out;
  const ServiceLimits& lim = svc.limits();
  if (it->is_string()) {
    auto ids = svc.Tokenize("", it->get<std::string>());
    if (!ids.ok()) return ids.status();
    out = std::move(*ids);
  } else if (it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() >= svc.model().vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("'prompt' token ids must be integers in [0, ", svc.model().vocab, ")"));
      }
      out.push_back(static_cast<int32_t>(v.get<long long>()));
    }
  } else {
    return absl::InvalidArgumentError("'prompt' must be a string or an array of token ids");
  }
  if (static_cast<int64_t>(out.size()) > lim.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", out.size(),
                                                   " tokens; this server accepts at most ",
                                                   lim.max_prompt_tokens));
  }
  return out;
}

absl::StatusOr<std::string> OptionalName(const json& j) {
  auto it = j.find("session_id");
  if (it == j.end() || it->is_null()) return NewName("sess-");
  if (!it->is_string()) return absl::InvalidArgumentError("'session_id' must be a string");
  return it->get<std::string>();
}

bool IsSnapshotUpload(std::string_view target) {
  return (target.rfind(kPrefix, 0) == 0 && target.size() > 9 &&
          target.substr(target.size() - 9) == "/snapshot") ||
         target.rfind(kClientHeld, 0) == 0;
}

}  // namespace

size_t SessionBodyLimit(std::string_view target, size_t default_limit, Service& svc) {
  if (!IsSnapshotUpload(target)) return default_limit;
  // Base64 in JSON for /v1/snapshot/completions: 4/3 of the bytes, plus the request.
  size_t snap = svc.scheduler().options().max_snapshot_bytes;
  return std::max(default_limit, snap / 3 * 4 + 8 + default_limit);
}

void HttpConnection::SessionReply(absl::StatusOr<std::string> body) {
  if (body.ok()) Send(200, "application/json", std::move(*body));
  else SendError(body.status());
}

bool HttpConnection::HandleSessions(const std::string& target) {
  const bool client_held = target == kClientHeld;
  if (!client_held && target != kPrefix && target.rfind(std::string(kPrefix) + "/", 0) != 0) {
    return false;
  }
  route_ = client_held ? std::string(kClientHeld) : std::string(kPrefix);
  if (shared_->opts.api_keys &&
      !shared_->opts.api_keys->Allows(std::string(req_[http::field::authorization]))) {
    SendError(absl::UnauthenticatedError("a valid API key is required (Authorization: Bearer <key>)"));
    return true;
  }
  Service& svc = *shared_->service;
  Scheduler& sched = svc.scheduler();
  const auto method = req_.method();
  auto self = shared_from_this();
  auto exec = stream_.get_executor();
  // Replies from the loop thread go back to this connection's strand.
  auto reply_info = [self, exec](absl::StatusOr<StoredSessionInfo> r) {
    absl::StatusOr<std::string> body =
        r.ok() ? absl::StatusOr<std::string>(SessionJson(*r).dump()) : r.status();
    net::post(exec, [self, body = std::move(body)]() mutable { self->SessionReply(std::move(body)); });
  };
  auto bad_method = [this](const char* allow) {
    Send(405, "application/json",
         OpenAiErrorJsonRaw(absl::StrCat("use ", allow), "invalid_request_error", "method_not_allowed"),
         {{"Allow", allow}});
    return true;
  };
  const int depth = shared_->opts.max_json_depth;

  if (client_held) {
    if (method != http::verb::post) return bad_method("POST");
    StartClientHeld();
    return true;
  }
  if (target == kPrefix) {
    if (method == http::verb::get) {
      sched.ListSessions([self, exec](std::vector<StoredSessionInfo> list) {
        json data = json::array();
        for (const auto& i : list) data.push_back(SessionJson(i));
        std::string body = json{{"object", "list"}, {"data", data}}.dump();
        net::post(exec, [self, body = std::move(body)]() mutable { self->SessionReply(std::move(body)); });
      });
      return true;
    }
    if (method != http::verb::post) return bad_method("GET, POST");
    auto j = ParseBody(req_.body(), depth, true);
    if (!j.ok()) return SendError(j.status()), true;
    auto name = OptionalName(*j);
    if (!name.ok()) return SendError(name.status()), true;
    auto toks = PromptTokens(*j, svc);
    if (!toks.ok()) return SendError(toks.status()), true;
    sched.CreateSession(*name, std::move(*toks), false, reply_info);
    return true;
  }
  // /v1/sessions/{id}[/op]
  std::string rest = target.substr(kPrefix.size() + 1);
  std::string id = rest, op;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    id = rest.substr(0, slash);
    op = rest.substr(slash + 1);
  }
  if (op.empty()) {
    if (method == http::verb::get) {
      sched.GetSession(id, reply_info);
    } else if (method == http::verb::delete_) {
      sched.DeleteSession(id, [self, exec, id](absl::Status s) {
        absl::StatusOr<std::string> body =
            s.ok() ? absl::StatusOr<std::string>(json{{"id", id}, {"object", "session"}, {"deleted", true}}.dump())
                   : absl::StatusOr<std::string>(s);
        net::post(exec, [self, body = std::move(body)]() mutable { self->SessionReply(std::move(body)); });
      });
    } else {
      return bad_method("GET, DELETE");
    }
    return true;
  }
  if (op == "append") {
    if (method != http::verb::post) return bad_method("POST");
    auto j = ParseBody(req_.body(), depth, false);
    if (!j.ok()) return SendError(j.status()), true;
    auto toks = PromptTokens(*j, svc);
    if (!toks.ok()) return SendError(toks.status()), true;
    sched.AppendToSession(id, std::move(*toks), reply_info);
    return true;
  }
  if (op == "completions") {
    if (method != http::verb::post) return bad_method("POST");
    StartGenerate(ApiKind::kCompletion, id);
    return true;
  }
  if (op == "fork") {
    if (method != http::verb::post) return bad_method("POST");
    auto j = ParseBody(req_.body(), depth, true);
    if (!j.ok()) return SendError(j.status()), true;
    auto name = OptionalName(*j);
    if (!name.ok()) return SendError(name.status()), true;
    sched.ForkSession(id, *name, reply_info);
    return true;
  }
  if (op == "snapshot") {
    if (method == http::verb::get) {
      sched.SnapshotSession(id, false, [self, exec](absl::StatusOr<std::string> b) {
        net::post(exec, [self, b = std::move(b)]() mutable {
          if (b.ok()) self->Send(200, "application/octet-stream", std::move(*b));
          else self->SendError(b.status());
        });
      });
    } else if (method == http::verb::put || method == http::verb::post) {
      sched.RestoreSession(id, std::move(req_.body()), false, reply_info);
    } else {
      return bad_method("GET, PUT");
    }
    return true;
  }
  route_ = "other";
  Send(404, "application/json", OpenAiErrorJsonRaw("no such endpoint", "invalid_request_error", "not_found"));
  return true;
}

}  // namespace rwkvx

namespace rwkvx {

// One /v1/snapshot/completions request: restore (or create) an ephemeral session, generate
// from it, snapshot and delete it, answer with the completion and the new snapshot.
struct ClientHeldCall {
  GenerateParams params;
  std::string session;
  std::shared_ptr<RequestStream> stream;
  std::unique_ptr<OpenAiResponder> responder;
  absl::Status error;
  bool done = false;
};

void HttpConnection::StartClientHeld() {
  Service& svc = *shared_->service;
  Scheduler& sched = svc.scheduler();
  const int depth = shared_->opts.max_json_depth;
  auto j = ParseBody(req_.body(), depth, false);
  if (!j.ok()) return SendError(j.status());
  std::string bytes;
  bool has_snapshot = false;
  if (auto it = j->find("snapshot"); it != j->end() && !it->is_null()) {
    if (!it->is_string() || !absl::Base64Unescape(it->get<std::string>(), &bytes)) {
      return SendError(absl::InvalidArgumentError("'snapshot' must be a base64 string"));
    }
    has_snapshot = true;
    j->erase(it);
  }
  auto parsed = ParseOpenAiRequest(ApiKind::kCompletion, j->dump(), depth);
  if (!parsed.ok()) return SendError(parsed.status());
  if (parsed->stream) {
    return SendError(absl::InvalidArgumentError(
        "'stream' is not supported with client-held state; use /v1/sessions/{id}/completions"));
  }
  auto call = std::make_shared<ClientHeldCall>();
  call->session = NewName("client-state-");
  call->params = std::move(parsed->params);
  call->params.session_id = call->session;
  call->params.request_id = NewName("cmpl-");
  const ModelDescription& m = svc.model();
  call->responder = std::make_unique<OpenAiResponder>(
      ApiKind::kCompletion, call->params.request_id, m.id,
      static_cast<int64_t>(absl::ToUnixSeconds(absl::Now())), &svc.tokenizer(), 1,
      call->params.logprobs, false);
  auto self = shared_from_this();
  auto exec = stream_.get_executor();
  Service* svcp = &svc;
  // Runs on the loop thread once the session exists.
  auto start = [self, exec, call, svcp](absl::StatusOr<StoredSessionInfo> r) {
    if (!r.ok()) {
      net::post(exec, [self, st = r.status()] { self->SendError(st); });
      return;
    }
    auto streams = svcp->Generate(call->params);
    if (!streams.ok()) {
      svcp->scheduler().DeleteSession(call->session, [](absl::Status) {});
      net::post(exec, [self, st = streams.status()] { self->SendError(st); });
      return;
    }
    call->stream = streams->front();
    call->stream->SetNotify([self, exec, call] {
      net::post(exec, [self, call] { self->PumpClientHeld(call); });
    });
    net::post(exec, [self, call] { self->PumpClientHeld(call); });
  };
  if (has_snapshot) sched.RestoreSession(call->session, std::move(bytes), true, start);
  else sched.CreateSession(call->session, {}, true, start);
}

void HttpConnection::PumpClientHeld(std::shared_ptr<ClientHeldCall> call) {
  if (call->done || !call->stream) return;
  std::vector<GenerateEvent> evs;
  call->stream->PopAll(&evs);
  bool final = false;
  for (auto& ev : evs) {
    if (ev.final) {
      final = true;
      if (ev.finish == FinishReason::kError || ev.finish == FinishReason::kCancelled) {
        call->error = ev.status.ok() ? absl::InternalError("generation failed") : ev.status;
      }
    }
    if (call->error.ok()) call->responder->Add(0, ev);
  }
  if (!final) return;
  call->done = true;
  call->stream->SetNotify(nullptr);
  Scheduler& sched = shared_->service->scheduler();
  if (!call->error.ok()) {
    sched.DeleteSession(call->session, [](absl::Status) {});
    return SendError(call->error);
  }
  auto self = shared_from_this();
  auto exec = stream_.get_executor();
  sched.SnapshotSession(call->session, /*remove=*/true, [self, exec, call](absl::StatusOr<std::string> b) {
    net::post(exec, [self, call, b = std::move(b)]() mutable {
      if (!b.ok()) return self->SendError(b.status());
      json body = json::parse(call->responder->Body(), nullptr, false);
      body["snapshot"] = absl::Base64Escape(*b);
      self->Send(200, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace));
    });
  });
}

}  // namespace rwkvx
