// Service: turns of /v1/responses (response_generation.h). The messages are rendered and
// tokenized here, on the caller's thread; the chain of session calls (fork or create the
// working copy, append, fork the stored copy, submit) runs in the scheduler's callbacks
// on its loop thread, each posting the next command.
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/errors.h"
#include "server/random_id.h"
#include "server/scheduling/scheduler.h"
#include "server/service/service.h"

namespace rwkvx {
namespace {

using Info = absl::StatusOr<StoredSessionInfo>;
using Next = std::function<void(Info)>;

}  // namespace

void Service::CreateResponse(const GenerateParams& gen, ResponseTurn turn,
                             ResponseCallback started) {
  if (!gen.session_id.empty() || gen.prompt.text || gen.prompt.ids) {
    return started(absl::InternalError("CreateResponse: the prompt comes from the turn"));
  }
  const bool continuing = !turn.previous.empty();
  auto pieces = BuildChatPieces(turn.input, continuing);
  if (!pieces.ok()) return started(pieces.status());
  std::vector<int64_t> ids;
  for (const auto& piece : *pieces) {
    for (int32_t t : tokenizer_->Encode(piece)) ids.push_back(t);
  }
  PromptInput input;
  input.ids = std::move(ids);
  auto tokens = PromptTokens(input, /*required=*/true, /*may_be_empty=*/false);
  if (!tokens.ok()) return started(tokens.status());

  GenerateParams q = gen;
  q.stop.push_back(kChatStop);
  const bool sessions = turn.store || continuing;
  const std::string work = sessions ? RandomId("resp-work-") : "";
  const std::string stored = turn.store ? turn.id : "";
  // A stored turn feeds its tokens to the working copy before the stored copy is forked;
  // otherwise they are the generate's prompt.
  if (!turn.store) q.prompt.ids = std::move(input.ids);
  else q.prompt.ids.emplace();  // the session's pending tokens alone
  q.session_id = work;
  auto streams = BuildStreams(q);
  if (!streams.ok()) return started(streams.status());
  auto g = std::make_shared<ResponseGeneration>(scheduler_, tokenizer_, stored, work);
  g->stream_ = std::move(streams->front());
  g->input_tokens_ = static_cast<int64_t>(tokens->size());
  if (!sessions) {
    if (absl::Status s = scheduler_->Submit(g->stream_); !s.ok()) return started(s);
    return started(std::move(g));
  }

  Scheduler* sched = scheduler_;
  // Each step runs on the loop thread; on error `g` is dropped, which deletes the sessions.
  auto submit = [sched, g, started](Info info) {
    if (!info.ok()) return started(Unshared(info.status()));
    if (absl::Status s = sched->Submit(g->stream_); !s.ok()) return started(Unshared(s));
    started(g);
  };
  Next fork_stored = [sched, g, started, submit, work, stored](Info info) {
    if (!info.ok()) return started(Unshared(info.status()));
    if (stored.empty()) return submit(info);
    sched->ForkSession(work, stored, submit);
  };
  if (!continuing) {
    sched->CreateSession(work, std::move(*tokens), /*ephemeral=*/true, fork_stored);
    return;
  }
  const std::string previous = turn.previous;
  const bool store = turn.store;
  auto forked = [sched, g, started, fork_stored, work, previous, store,
                 tokens = std::move(*tokens)](Info info) mutable {
    if (!info.ok()) {
      if (absl::IsNotFound(info.status())) {
        return started(absl::NotFoundError(absl::StrCat(
            "the previous response '", previous.substr(0, 200),
            "' has no stored state: it expired (idle past --session-idle-timeout), was "
            "dropped by the session budgets, or was deleted")));
      }
      return started(Unshared(info.status()));
    }
    g->carried_tokens_ = info->tokens_seen;
    g->input_tokens_ += info->tokens_seen + info->pending_tokens;
    if (!store) return fork_stored(std::move(info));  // the tokens are the generate's prompt
    sched->AppendToSession(work, std::move(tokens), fork_stored);
  };
  sched->ForkSession(previous, work, std::move(forked), /*ephemeral=*/true);
}

ResponseGeneration::ResponseGeneration(Scheduler* scheduler, const Tokenizer* tokenizer,
                                       std::string stored, std::string work)
    : scheduler_(scheduler),
      tokenizer_(tokenizer),
      stored_(std::move(stored)),
      work_(std::move(work)) {}

ResponseGeneration::~ResponseGeneration() {
  if (!finished_.exchange(true)) {
    if (stream_) stream_->Cancel();
    DeleteSessions(/*stored_too=*/true);
  }
}

void ResponseGeneration::DeleteSessions(bool stored_too) {
  // A session that was never made (an error before it) answers NotFound: nothing to do.
  if (!work_.empty()) scheduler_->DeleteSession(work_, [](absl::Status) {});
  if (stored_too && !stored_.empty()) scheduler_->DeleteSession(stored_, [](absl::Status) {});
}

void ResponseGeneration::Finish(const GenerateEvent& last, const std::string& answer,
                                DoneCallback done) {
  if (finished_.exchange(true)) {
    return done(absl::FailedPreconditionError("response generation already finished"));
  }
  if (last.finish != FinishReason::kStop && last.finish != FinishReason::kLength) {
    // Failed, cancelled, timed out, shut down: nothing is kept.
    DeleteSessions(/*stored_too=*/true);
    if (!last.status.ok()) return done(Unshared(last.status));
    return done(absl::UnavailableError(absl::StrCat("the response ended early (",
                                                    FinishReasonName(last.finish), ")")));
  }
  if (stored_.empty()) {
    // store: false: the reply waits for the working copy's deletion, so that a client that
    // got it and then lists sessions or scrapes the gauges sees nothing left behind.
    if (work_.empty()) return done(absl::OkStatus());
    return scheduler_->DeleteSession(work_, [done](absl::Status) { done(absl::OkStatus()); });
  }
  DeleteSessions(/*stored_too=*/false);  // runs before the append below (commands in order)
  std::vector<int32_t> tokens = tokenizer_->Encode(ChatAnswerPiece(answer));
  Scheduler* sched = scheduler_;
  std::string stored = stored_;
  sched->AppendToSession(stored_, std::move(tokens), [sched, stored, done](Info info) {
    if (!info.ok()) sched->DeleteSession(stored, [](absl::Status) {});
    done(Unshared(info.status()));  // one rep per receiving thread
  });
}

}  // namespace rwkvx
