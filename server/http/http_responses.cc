// HttpConnection: the Responses API (docs/API.md), routed by the table in
// http_connection.cc.
//   POST   /v1/responses          create (SSE events with "stream": true)
//   GET    /v1/responses/{id}     retrieve
//   DELETE /v1/responses/{id}     delete (the response object and its stored state)
// The response objects live in HttpShared::responses (ResponseRecords), their model state
// in the session store (Service::CreateResponse). Only JSON <-> Service calls here; the
// Service's callbacks post back to this strand.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "server/errors.h"
#include "server/http/http_connection.h"
#include "server/openai/responses_request.h"
#include "server/random_id.h"
#include "server/service/tools.h"

namespace rwkvx {
namespace {

absl::Status UnknownResponse(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no response '", id.substr(0, 200), "' is stored here"));
}

absl::Status Expired(const std::string& id) {
  return absl::NotFoundError(absl::StrCat(
      "the response '", id.substr(0, 200),
      "' has expired: its stored state was dropped (idle past --session-idle-timeout, over the "
      "session budgets, or deleted through /v1/sessions), so it can no longer be retrieved or "
      "continued"));
}

// The checks on the response a request continues; OK to continue it.
absl::Status CheckPrevious(const std::string& id, const std::optional<ResponseView>& prev,
                           const std::optional<std::string>& instructions) {
  if (!prev) return UnknownResponse(id);
  if (!prev->store) {
    return absl::InvalidArgumentError(absl::StrCat("the response '", id.substr(0, 200),
                                                   "' was created with store: false; nothing was kept to continue"));
  }
  if (prev->status == "in_progress") {
    return absl::FailedPreconditionError(absl::StrCat("the response '", id.substr(0, 200), "' is still in progress"));
  }
  if (prev->status == "failed") return Expired(id);
  if (instructions && instructions != prev->conversation_instructions) {
    return absl::InvalidArgumentError(
        "'instructions' differ from those of the conversation continued by "
        "'previous_response_id': its state has read them already and cannot unread them; "
        "give the same instructions or leave them out");
  }
  return absl::OkStatus();
}

}  // namespace

// One POST /v1/responses: the view being built, the Service's generation and, when
// streaming, the SSE bytes not yet written (one write in flight at a time).
struct HttpConnection::ResponseCall {
  ResponseView view;
  bool stream = false;
  std::shared_ptr<ResponseGeneration> gen;
  ResponseEvents events;
  std::string raw;         // the reply as generated (the stored answer); view.text is its text part
  ToolCallReader reader;   // view.tools: the reply into text and calls
  bool ended = false;      // the final event was seen
  bool writing = false;
  bool finishing = false;  // the last bytes are queued
  std::string pending, inflight;
};

void HttpConnection::CreateResponse(const PathParams&) {
  Service& svc = *shared_->service;
  auto parsed = ParseResponsesRequest(req_.body(), shared_->opts.max_json_depth);
  if (!parsed.ok()) return SendError(parsed.status());
  ResponsesRequest& r = *parsed;
  if (auto s = svc.CheckModel(r.params.model); !s.ok()) return SendError(s);
  auto call = std::make_shared<ResponseCall>();
  ResponseView& v = call->view;
  v.id = RandomId("resp_");
  v.message_id = RandomId("msg_");
  v.model = svc.model().id;
  v.created_at = static_cast<int64_t>(absl::ToUnixSeconds(absl::Now()));
  v.instructions = r.instructions;
  v.conversation_instructions = r.instructions;
  v.user = r.user;
  v.metadata = r.metadata;
  v.text_format = r.text_format;
  v.max_output_tokens = r.params.max_tokens;
  v.temperature = r.params.temperature.value_or(1.0);
  v.top_p = r.params.top_p.value_or(1.0);
  v.store = r.turn.store;
  v.logprobs = r.logprobs;
  if (r.params.top_logprobs > 0 || r.logprobs) v.top_logprobs = r.params.top_logprobs;
  v.tools = r.tools.calls;
  v.tools_json = r.tools.tools_json;
  v.tool_choice_json = r.tools.choice_json;
  v.parallel_tool_calls = r.tools.parallel;
  call->stream = r.stream;
  if (!r.turn.previous.empty()) {
    v.previous = r.turn.previous;
    auto prev = shared_->responses.Get(r.turn.previous);
    if (auto s = CheckPrevious(r.turn.previous, prev, r.instructions); !s.ok()) return SendError(s);
    v.conversation_instructions = prev->conversation_instructions;
    for (const auto& c : prev->calls) r.call_ids.push_back(c.call_id);
  } else if (r.instructions) {
    r.turn.input.insert(r.turn.input.begin(), ChatMessage{"system", *r.instructions});
  }
  // Each function_call_output answers a call of this input or of the response continued.
  for (const std::string& id : r.output_call_ids) {
    if (std::find(r.call_ids.begin(), r.call_ids.end(), id) == r.call_ids.end()) {
      return SendError(absl::InvalidArgumentError(absl::StrCat(
          "no function call with call_id '", id.substr(0, 200),
          "' to answer: a function_call_output must follow its function_call item in 'input' or answer a call "
          "of the response named by 'previous_response_id'")));
    }
  }
  r.turn.id = v.id;
  r.params.request_id = v.id;
  if (v.store) shared_->responses.Put(v);  // retrievable (in_progress) from here on
  using Started = absl::StatusOr<std::shared_ptr<ResponseGeneration>>;
  const std::string previous = r.turn.previous;
  svc.CreateResponse(
      r.params, std::move(r.turn),
      Later<Started>([call, previous](HttpConnection& self, Started gen) {
        if (!gen.ok()) {
          self.shared_->responses.Erase(call->view.id);
          // The previous response's state is gone although its object was kept: expired.
          if (absl::IsNotFound(gen.status()) && !previous.empty()) {
            self.shared_->responses.Erase(previous);
            return self.SendError(Expired(previous));
          }
          return self.SendError(gen.status());
        }
        self.StartResponse(call, std::move(*gen));
      }));
}

void HttpConnection::StartResponse(std::shared_ptr<ResponseCall> call,
                                   std::shared_ptr<ResponseGeneration> gen) {
  if (closed_ || client_gone_) {
    shared_->responses.Erase(call->view.id);
    return;  // dropping `gen` cancels it and deletes its sessions
  }
  call->gen = std::move(gen);
  resp_ = call;
  const_cast<HttpShared*>(shared_)->active_generations.fetch_add(1);
  auto pump = Later<bool>([call](HttpConnection& self, bool) {
    if (self.resp_ == call) self.PumpResponse();
  });
  call->gen->stream()->SetNotify([pump] { pump(true); });
  stream_.expires_never();
  if (call->stream) {
    Count(200);
    call->pending = SseHeaders();
    std::string start = call->events.Start(call->view);
    absl::StrAppend(&call->pending, absl::StrFormat("%x\r\n", start.size()), start, "\r\n");
  }
  WatchDisconnect();
  PumpResponse();
}

void HttpConnection::PumpResponse() {
  ResponseCall& c = *resp_;
  if (!c.ended) {
    std::vector<GenerateEvent> evs;
    c.gen->stream()->PopAll(&evs);
    std::string out;
    for (auto& ev : evs) {
      c.raw += ev.text;
      if (!c.view.tools) {
        const size_t lp0 = c.view.token_logprobs.size();
        if (c.view.logprobs) {  // each token's bytes and its alternatives
          const Tokenizer& tok = shared_->service->tokenizer();
          for (const TokenEvent& t : ev.tokens) {
            ResponseView::Logprob l{std::string(tok.TokenBytes(t.token)), t.logprob, {}};
            for (const auto& a : t.top) l.top.emplace_back(std::string(tok.TokenBytes(a.token)), a.logprob);
            c.view.token_logprobs.push_back(std::move(l));
          }
        }
        c.view.text += ev.text;
        if (c.stream && (!ev.text.empty() || c.view.token_logprobs.size() > lp0))
          out += c.events.Delta(c.view, ev.text, lp0, c.view.token_logprobs.size());
      } else {  // text, or function calls (server/service/tools.h)
        ToolCallReader::Piece p = c.reader.Take(ev.text, ev.final);
        c.view.text += p.content;
        if (c.stream && !p.content.empty()) out += c.events.Delta(c.view, p.content);
        for (ToolCallReader::CallDelta& d : p.calls) {
          if (d.name) c.view.calls.push_back({RandomId("fc_"), RandomId("call_"), *d.name, ""});
          const size_t k = static_cast<size_t>(d.index);
          if (k >= c.view.calls.size()) continue;  // (a reader contract: names come first)
          c.view.calls[k].arguments += d.arguments;
          if (c.stream) out += c.events.CallDelta(c.view, k, d.arguments);
        }
      }
      if (!ev.final) continue;
      c.ended = true;
      c.view.Finish(ev, c.gen->input_tokens(), c.gen->carried_tokens() + ev.cached_tokens);
      c.gen->stream()->SetNotify(nullptr);
      auto call = resp_;
      c.gen->Finish(ev, c.raw, Later<absl::Status>([call](HttpConnection& self, absl::Status s) {
                      if (self.resp_ == call) self.EndResponse(s);
                    }));
      break;
    }
    if (!out.empty()) QueueResponseBytes(std::move(out), false);
  }
  FlushResponse();
}

void HttpConnection::EndResponse(absl::Status s) {
  ResponseCall& c = *resp_;
  if (!s.ok()) {
    c.view.status = "failed";
    c.view.error = absl::Status(s.code(), ClientMessage(s));
    shared_->responses.Erase(c.view.id);
  } else if (c.view.store) {
    shared_->responses.Put(c.view);
  }
  if (client_gone_ || closed_) return FinishResponse();
  if (!c.stream) {
    auto call = resp_;
    FinishResponse();
    if (!s.ok()) return SendError(s);
    return Send(200, "application/json", ResponseJson(call->view));
  }
  QueueResponseBytes(c.events.End(c.view), true);
  FlushResponse();
}

void HttpConnection::QueueResponseBytes(std::string events, bool last) {
  ResponseCall& c = *resp_;
  if (!c.stream || c.finishing) return;
  absl::StrAppend(&c.pending, absl::StrFormat("%x\r\n", events.size()), events, "\r\n");
  if (last) {
    c.pending += "0\r\n\r\n";
    c.finishing = true;
  }
}

void HttpConnection::FlushResponse() {
  ResponseCall& c = *resp_;
  if (!c.stream || c.writing || c.pending.empty() || client_gone_ || closed_) return;
  c.inflight.swap(c.pending);
  c.pending.clear();
  c.writing = true;
  net::async_write(stream_.socket(), net::buffer(c.inflight),
                   [self = shared_from_this(), call = resp_](beast::error_code ec, size_t) {
                     if (self->resp_ == call) self->OnResponseWritten(ec);
                   });
}

void HttpConnection::OnResponseWritten(beast::error_code ec) {
  ResponseCall& c = *resp_;
  c.writing = false;
  c.inflight.clear();
  if (ec) {
    client_gone_ = true;
    c.gen->stream()->Cancel();
    if (c.finishing) FinishResponse();  // else EndResponse, still to come, finishes
    return;
  }
  if (!c.pending.empty()) return FlushResponse();
  if (c.finishing) {
    FinishResponse();
    ResumeAfterStream();
  }
}

void HttpConnection::FinishResponse() {
  if (!resp_) return;
  resp_->gen->stream()->SetNotify(nullptr);
  resp_.reset();
  GenerationEnded();
}

void HttpConnection::CancelResponse() {
  if (resp_ && resp_->gen) resp_->gen->stream()->Cancel();
}

void HttpConnection::GetResponse(const PathParams& p) {
  auto rec = shared_->responses.Get(p[0]);
  if (!rec) return SendError(UnknownResponse(p[0]));
  if (rec->status == "in_progress") return SendJson(ResponseJson(*rec));
  // A finished response is retrievable while its state is stored.
  shared_->service->GetSession(
      p[0], Later<absl::StatusOr<StoredSessionInfo>>(
                [id = p[0]](HttpConnection& self, absl::StatusOr<StoredSessionInfo> info) {
                  auto rec = self.shared_->responses.Get(id);
                  if (!rec) return self.SendError(UnknownResponse(id));
                  if (absl::IsNotFound(info.status())) {
                    self.shared_->responses.Erase(id);
                    return self.SendError(Expired(id));
                  }
                  self.SendJson(ResponseJson(*rec));
                }));
}

void HttpConnection::DeleteResponse(const PathParams& p) {
  auto rec = shared_->responses.Get(p[0]);
  if (!rec) return SendError(UnknownResponse(p[0]));
  if (rec->status == "in_progress") {
    return SendError(absl::FailedPreconditionError(
        absl::StrCat("the response '", p[0].substr(0, 200), "' is still in progress")));
  }
  shared_->service->DeleteSession(
      p[0], Later<absl::Status>([id = p[0]](HttpConnection& self, absl::Status s) {
        // NotFound: the state had expired already; the object goes all the same.
        if (!s.ok() && !absl::IsNotFound(s)) return self.SendError(s);
        self.shared_->responses.Erase(id);
        self.SendJson(nlohmann::json{{"id", id}, {"object", "response"}, {"deleted", true}}.dump());
      }));
}

}  // namespace rwkvx
