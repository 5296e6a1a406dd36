#include "server/grpc/grpc_generate.h"

#include <string>
#include <utility>
#include <vector>

#include "server/grpc/grpc_convert.h"
#include "server/random_id.h"

namespace rwkvx {

namespace pb = ::rwkvx::v1;

GenerateReactor::GenerateReactor(const Tokenizer* tok, ServerMetrics* metrics,
                                 std::chrono::system_clock::time_point deadline, std::string method)
    : tok_(tok), metrics_(metrics), deadline_(deadline), link_(std::make_shared<Link>()), method_(std::move(method)) {
  link_->r = this;
}

// SetNotify runs the callback at once when events are already queued (a request the
// scheduler refused or finished before we got here), and the callback takes link->mu:
// so it must not be called with link->mu held (that self-deadlock hung the call until
// its deadline). After SetNotify the reactor may already be finished and deleted: only
// `link` is touched from then on.
void GenerateReactor::Attach(std::shared_ptr<RequestStream> s) {
  std::shared_ptr<Link> link = link_;
  {
    std::lock_guard<std::mutex> l(link->mu);
    stream_ = s;
    if (cancelled_) s->Cancel();
  }
  s->SetNotify([link] { Pump(link); });
  Pump(link);
}

void GenerateReactor::Attach(std::shared_ptr<ClientHeldGeneration> g) {
  {
    std::lock_guard<std::mutex> l(link_->mu);
    client_held_ = g;
  }
  Attach(g->stream());
}

void GenerateReactor::Fail(const absl::Status& st) {
  std::lock_guard<std::mutex> l(link_->mu);
  if (finished_) return;
  finished_ = true;
  grpc::Status gs = ToGrpc(st);
  Count(gs.error_code());
  Finish(gs);
}

void GenerateReactor::OnWriteDone(bool ok) {
  std::shared_ptr<Link> link = link_;
  {
    std::lock_guard<std::mutex> l(link->mu);
    writing_ = false;
    if (!ok && stream_) stream_->Cancel();
  }
  Pump(link);
}

void GenerateReactor::OnCancel() {
  std::lock_guard<std::mutex> l(link_->mu);
  cancelled_ = true;
  if (stream_) stream_->Cancel();
}

void GenerateReactor::OnDone() {
  if (stream_) stream_->SetNotify(nullptr);
  {
    std::lock_guard<std::mutex> l(link_->mu);
    link_->r = nullptr;
  }
  delete this;
}

void GenerateReactor::Pump(const std::shared_ptr<Link>& link) {
  Ending ending;
  {
    std::lock_guard<std::mutex> l(link->mu);
    if (link->r == nullptr) return;
    link->r->PumpLocked(&ending);
  }
  if (!ending.gen) return;
  // The reactor lives until it calls Finish, which only EndWithSnapshot does from here.
  ending.gen->Finish(ending.last, [link](absl::StatusOr<std::string> snapshot) {
    std::lock_guard<std::mutex> l(link->mu);
    if (link->r) link->r->EndWithSnapshot(std::move(snapshot));
  });
}

void GenerateReactor::PumpLocked(Ending* ending) {
  if (writing_ || finished_ || !stream_) return;
  std::vector<GenerateEvent> evs;
  stream_->PopAll(&evs);
  for (auto& e : evs) pending_.push_back(std::move(e));
  if (pending_.empty()) return;
  resp_.Clear();
  if (!echo_.empty()) {
    resp_.set_text(std::move(echo_));
    echo_.clear();
  }
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
    if (tools_) {
      AddToolText(e.text, e.final);
    } else {
      resp_.mutable_text()->append(e.text);
    }
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
  // Timed out past the call's own deadline (the scheduler's deadline is never earlier
  // than the call's): the call ends DEADLINE_EXCEEDED, as gRPC's own timers would end it.
  // Ending it OK with finish_reason "timeout" raced those timers and could reach a busy
  // client as a success. A shorter --request-timeout still ends OK with "timeout".
  if (last.finish == FinishReason::kTimeout && std::chrono::system_clock::now() >= deadline_) {
    last.finish = FinishReason::kError;  // last.status is the scheduler's DeadlineExceeded
  }
  const bool failed = last.finish == FinishReason::kError || last.finish == FinishReason::kCancelled;
  if (!failed) {
    const bool calls = tools_ && last.finish == FinishReason::kStop && reader_.calls_complete();
    resp_.set_finish_reason(calls ? "tool_calls" : FinishReasonName(last.finish));
    resp_.mutable_usage()->set_prompt_tokens(last.prompt_tokens);
    resp_.mutable_usage()->set_completion_tokens(last.completion_tokens);
    resp_.mutable_usage()->set_total_tokens(last.prompt_tokens + last.completion_tokens);
    resp_.mutable_usage()->set_cached_tokens(last.cached_tokens);
  }
  if (client_held_) {
    // The new snapshot goes on this last event (or the error ends the call): Pump asks
    // for it once the lock is released.
    ending->gen = client_held_;
    ending->last = std::move(last);
    return;
  }
  if (failed) {
    grpc::Status gs = ToGrpc(last.status.ok() ? absl::InternalError("generation failed") : last.status);
    Count(gs.error_code());
    Finish(gs);
    return;
  }
  Count(grpc::StatusCode::OK);
  StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
}

void GenerateReactor::EndWithSnapshot(absl::StatusOr<std::string> snapshot) {
  if (!snapshot.ok()) {
    grpc::Status gs = ToGrpc(snapshot.status());
    Count(gs.error_code());
    Finish(gs);
    return;
  }
  resp_.set_snapshot(std::move(*snapshot));
  Count(grpc::StatusCode::OK);
  StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
}

void GenerateReactor::AddToolText(const std::string& text, bool final) {
  ToolCallReader::Piece p = reader_.Take(text, final);
  resp_.mutable_text()->append(p.content);
  for (ToolCallReader::CallDelta& d : p.calls) {
    pb::ToolCallDelta* out = nullptr;
    // Deltas of one call within one event are merged.
    if (!d.name && resp_.tool_calls_size() > 0 && resp_.tool_calls().rbegin()->index() == d.index) {
      out = resp_.mutable_tool_calls(resp_.tool_calls_size() - 1);
    } else {
      out = resp_.add_tool_calls();
      out->set_index(d.index);
    }
    if (d.name) {
      out->set_id(RandomId("call_"));
      out->set_name(*d.name);
    }
    out->mutable_arguments()->append(d.arguments);
  }
}

void GenerateReactor::Count(grpc::StatusCode c) {
  metrics_->grpc_requests->Add({{"method", method_}, {"code", std::to_string(static_cast<int>(c))}})
      .Increment();
}

}  // namespace rwkvx
