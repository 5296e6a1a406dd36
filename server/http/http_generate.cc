// HttpConnection: the generation endpoints. Streaming responses are written as raw
// HTTP/1.1 chunked SSE; the connection pops new events only after its previous write
// completed (backpressure stays in the RequestStream's bounded buffer). While a request
// is generating, a read on the socket watches for the client going away and cancels the
// request's streams (the scheduler frees their sessions at its next step).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/errors.h"
#include "server/http/http_connection.h"
#include "server/log.h"
#include "server/random_id.h"

namespace rwkvx {

void HttpConnection::Completions(const PathParams&) { StartGenerate(ApiKind::kCompletion); }

void HttpConnection::ChatCompletions(const PathParams&) { StartGenerate(ApiKind::kChat); }

void HttpConnection::StartGenerate(ApiKind kind, const std::string& session_id) {
  auto parsed = ParseOpenAiRequest(kind, req_.body(), shared_->opts.max_json_depth);
  if (!parsed.ok()) {
    SendError(parsed.status());
    return;
  }
  if (!session_id.empty()) parsed->params.session_id = session_id;  // /v1/sessions/{id}/...
  std::string id = RandomId(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-");
  parsed->params.request_id = id;
  auto streams = shared_->service->Generate(parsed->params);
  if (!streams.ok()) {
    SendError(streams.status());
    return;
  }
  const ModelDescription& m = shared_->service->model();
  gen_ = std::make_unique<Gen>();
  gen_->kind = kind;
  gen_->stream = parsed->stream;
  gen_->streams = std::move(*streams);
  gen_->done.assign(gen_->streams.size(), false);
  gen_->responder = std::make_unique<OpenAiResponder>(
      kind, id, m.id, static_cast<int64_t>(absl::ToUnixSeconds(absl::Now())),
      &shared_->service->tokenizer(), static_cast<int>(gen_->streams.size()),
      parsed->params.logprobs, parsed->stream && parsed->include_usage);
  if (parsed->tools) gen_->responder->SetTools();
  if (parsed->echo) {
    const PromptInput& prompt = parsed->params.prompt;
    if (prompt.text) {
      gen_->responder->SetEcho(*prompt.text);
    } else if (prompt.ids) {  // valid ids: the Service accepted them
      auto text = shared_->service->Detokenize(parsed->params.model, *prompt.ids);
      if (text.ok()) gen_->responder->SetEcho(std::move(*text));
    }
  }
  const_cast<HttpShared*>(shared_)->active_generations.fetch_add(1);
  std::weak_ptr<HttpConnection> weak = shared_from_this();
  auto exec = stream_.get_executor();
  for (auto& s : gen_->streams) {
    s->SetNotify([weak, exec] {
      net::post(exec, [weak] {
        if (auto self = weak.lock()) self->Pump();
      });
    });
  }
  stream_.expires_never();
  if (gen_->stream) {
    Count(200);
    gen_->pending = SseHeaders();
    std::string start = gen_->responder->StreamStart();
    if (!start.empty()) absl::StrAppend(&gen_->pending, absl::StrFormat("%x\r\n", start.size()), start, "\r\n");
  }
  WatchDisconnect();
  Pump();
}

std::string HttpConnection::SseHeaders() const {
  std::string cors;
  if (!cors_origin_.empty()) {
    cors = absl::StrCat("Access-Control-Allow-Origin: ", cors_origin_, "\r\n",
                        cors_origin_ == "*" ? "" : "Vary: Origin\r\n");
  }
  return absl::StrCat(
      "HTTP/1.1 200 OK\r\nServer: rwkvx-serve\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n", cors, "Connection: ",
      keep_alive_ ? "keep-alive" : "close", "\r\n\r\n");
}

void HttpConnection::CancelStreams() {
  CancelAppend();
  CancelResponse();
  if (!gen_) return;
  for (auto& s : gen_->streams) s->Cancel();
}

void HttpConnection::WatchDisconnect() {
  if (watching_ || closed_) return;
  watching_ = true;
  auto mb = buffer_.prepare(4096);
  stream_.socket().async_read_some(
      mb, [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnWatch(ec, n); });
}

void HttpConnection::OnWatch(beast::error_code ec, size_t n) {
  watching_ = false;
  if (!ec) buffer_.commit(n);
  if (ec && ec != net::error::operation_aborted) {
    // The client closed or reset the connection.
    client_gone_ = true;
    CancelStreams();
    if (!gen_ && !append_ && !resp_) DoClose();
    return;
  }
  if (closed_) return;
  if (gen_ || append_ || resp_) {
    // Pipelined bytes (kept in buffer_ for the next request) or a stale abort.
    if (buffer_.size() < shared_->opts.max_header_bytes + shared_->opts.max_body_bytes) {
      WatchDisconnect();
    }
    return;
  }
  if (read_after_watch_) {
    read_after_watch_ = false;
    DoRead();
  }
}

void HttpConnection::Pump() {
  if (!gen_ || gen_->writing || gen_->finishing) return;
  Gen& g = *gen_;
  std::string out;
  std::vector<GenerateEvent> evs;
  bool all_done = true;
  for (size_t i = 0; i < g.streams.size(); ++i) {
    if (g.done[i]) continue;
    evs.clear();
    g.streams[i]->PopAll(&evs);
    for (auto& ev : evs) {
      if (ev.final) {
        g.done[i] = true;
        if (ev.finish == FinishReason::kError && g.error.ok()) {
          g.error = ev.status.ok() ? absl::InternalError("generation failed") : ev.status;
          CancelStreams();
        }
      }
      if (!g.error.ok() || client_gone_) continue;
      if (g.stream) out += g.responder->StreamEvent(static_cast<int>(i), ev);
      else g.responder->Add(static_cast<int>(i), ev);
    }
    if (!g.done[i]) all_done = false;
  }
  if (client_gone_) {
    if (all_done) FinishGenerate();
    return;
  }
  if (!g.stream) {
    if (!all_done) return;
    absl::Status err = g.error;
    std::string body = err.ok() ? g.responder->Body() : "";
    FinishGenerate();
    if (err.ok()) Send(200, "application/json", std::move(body));
    else SendError(err);
    return;
  }
  if (all_done) {
    out += g.error.ok() ? g.responder->StreamEnd()
                        : OpenAiResponder::StreamError(OpenAiErrorJson(g.error));
    g.finishing = true;
  }
  if (!out.empty()) absl::StrAppend(&g.pending, absl::StrFormat("%x\r\n", out.size()), out, "\r\n");
  if (g.finishing) g.pending += "0\r\n\r\n";
  if (g.pending.empty()) return;
  g.inflight.swap(g.pending);
  g.pending.clear();
  g.writing = true;
  net::async_write(stream_.socket(), net::buffer(g.inflight),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->OnStreamWritten(ec);
                   });
}

void HttpConnection::OnStreamWritten(beast::error_code ec) {
  if (!gen_) return;
  gen_->writing = false;
  gen_->inflight.clear();
  if (ec) {
    client_gone_ = true;
    CancelStreams();
    gen_->finishing = false;
    Pump();  // collects the final events, then FinishGenerate
    return;
  }
  if (gen_->finishing) {
    FinishGenerate();
    ResumeAfterStream();
    return;
  }
  Pump();
}

void HttpConnection::ResumeAfterStream() {
  if (!keep_alive_) {
    DoClose();
  } else if (watching_) {
    read_after_watch_ = true;
    beast::error_code ig;
    stream_.socket().cancel(ig);
  } else {
    DoRead();
  }
}

void HttpConnection::FinishGenerate() {
  if (!gen_) return;
  for (auto& s : gen_->streams) s->SetNotify(nullptr);
  gen_.reset();
  GenerationEnded();
}

void HttpConnection::GenerationEnded() {
  const_cast<HttpShared*>(shared_)->active_generations.fetch_sub(1);
  if (client_gone_) {
    DoClose();
    return;
  }
  if (watching_) {
    // Stop watching before the response is written; OnWritten / OnWatch resume reading.
    beast::error_code ig;
    stream_.socket().cancel(ig);
  }
}

}  // namespace rwkvx
