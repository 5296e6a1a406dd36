#include "server/grpc/grpc_append.h"

#include <utility>

#include "server/grpc/grpc_convert.h"

namespace rwkvx {

namespace pb = ::rwkvx::v1;

AppendReactor::AppendReactor(ServerMetrics* metrics)
    : metrics_(metrics), link_(std::make_shared<Link>()) {
  link_->r = this;
  std::shared_ptr<Link> link = link_;
  control_ = std::make_shared<AppendControl>(
      [link](int64_t fed, int64_t total) { OnProgress(link, fed, total); });
}

void AppendReactor::Start(Service* svc, std::string name, PromptInput prompt) {
  std::shared_ptr<Link> link = link_;
  svc->AppendToSession(
      std::move(name), std::move(prompt),
      [link](absl::StatusOr<StoredSessionInfo> r) { OnEnd(link, std::move(r)); }, control_);
}

void AppendReactor::Fail(const absl::Status& st) {
  std::lock_guard<std::mutex> l(link_->mu);
  FinishLocked(ToGrpc(st));
}

void AppendReactor::OnProgress(const std::shared_ptr<Link>& link, int64_t fed, int64_t total) {
  std::lock_guard<std::mutex> l(link->mu);
  AppendReactor* r = link->r;
  if (!r || r->finished_) return;
  r->next_.set_tokens_fed(fed);
  r->next_.set_tokens_total(total);
  r->has_next_ = true;
  r->WriteLocked();
}

void AppendReactor::OnEnd(const std::shared_ptr<Link>& link, absl::StatusOr<StoredSessionInfo> res) {
  std::lock_guard<std::mutex> l(link->mu);
  AppendReactor* r = link->r;
  if (!r || r->finished_) return;
  r->end_ = std::move(res);
  r->WriteLocked();
}

void AppendReactor::WriteLocked() {
  if (writing_ || finished_) return;
  if (end_) {
    if (!end_->ok()) return FinishLocked(ToGrpc(end_->status()));
    // The last message: every token of the append is in the session (fed, or pending
    // for the next generate as a plain append leaves it).
    const int64_t total = next_.tokens_total();  // the Service's first progress call sets it
    out_.Clear();
    FillSession(**end_, out_.mutable_session());
    out_.set_tokens_fed(total);
    out_.set_tokens_total(total);
    finished_ = true;
    writing_ = true;
    metrics_->grpc_requests->Add({{"method", "AppendSessionStream"}, {"code", "0"}}).Increment();
    StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    return;
  }
  if (!has_next_) return;
  out_ = next_;
  has_next_ = false;
  writing_ = true;
  StartWrite(&out_);
}

void AppendReactor::FinishLocked(const grpc::Status& gs) {
  if (finished_) return;
  finished_ = true;
  metrics_->grpc_requests
      ->Add({{"method", "AppendSessionStream"}, {"code", std::to_string(static_cast<int>(gs.error_code()))}})
      .Increment();
  Finish(gs);
}

void AppendReactor::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> l(link_->mu);
  writing_ = false;
  if (!ok) {
    control_->Cancel();
    return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
  }
  WriteLocked();
}

void AppendReactor::OnCancel() {
  control_->Cancel();
  std::lock_guard<std::mutex> l(link_->mu);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the append was cancelled"));
}

void AppendReactor::OnDone() {
  {
    std::lock_guard<std::mutex> l(link_->mu);
    link_->r = nullptr;
  }
  delete this;
}

}  // namespace rwkvx
