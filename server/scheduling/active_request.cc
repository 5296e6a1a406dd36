#include "server/scheduling/active_request.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "server/metrics/metrics.h"

namespace rwkvx {
namespace {

// The bookkeeping every final event gets: counts, metrics; then the push.
GenerateEvent FinalEvent(RequestStream& s, Ending e, absl::Time now, ServerMetrics* metrics) {
  e.event.finish = e.reason;
  e.event.status = std::move(e.status);
  e.event.prompt_tokens = static_cast<int>(s.request().prompt.size());
  metrics->Finished(FinishReasonName(e.reason)).Increment();
  metrics->request_latency->Observe(absl::ToDoubleSeconds(now - s.request().arrival));
  return std::move(e.event);
}

void PushFinal(RequestStream& s, Ending e, absl::Time now, ServerMetrics* metrics) {
  s.PushFinal(FinalEvent(s, std::move(e), now, metrics));
}

}  // namespace

ActiveRequest::ActiveRequest(std::shared_ptr<RequestStream> s, const Tokenizer* tok, StreamNotifier* notifier)
    : stream(std::move(s)),
      req(stream->request()),
      sampler(req.sampling, tok),
      tok_(tok),
      matcher_(req.grammar ? std::make_unique<grammar::GrammarMatcher>(req.grammar) : nullptr),
      decoder_(tok),
      stop_(req.stop_strings),
      notifier_(notifier),
      writer_(notifier && req.stop_strings.empty() ? std::make_shared<StreamWriter>(stream, tok) : nullptr) {}

std::vector<int32_t> ActiveRequest::MinTokensBans() const {
  std::vector<int32_t> bans;
  if (generated >= req.min_tokens) return bans;
  if (req.stop_at_end_of_text) bans.push_back(tok_->EndOfText());
  bans.insert(bans.end(), req.stop_tokens.begin(), req.stop_tokens.end());
  return bans;
}

void ActiveRequest::ApplyGrammarMask(float* logits, int vocab) {
  mask_.resize(static_cast<size_t>(matcher_->token_grammar().vocab().mask_words()));
  matcher_->FillMask(mask_.data());
  ApplyAllowedMask(mask_.data(), mask_.size(), logits, vocab);
}

SampleResult ActiveRequest::SampleRow(float* logits, int vocab,
                                      const std::vector<int32_t>& unspellable) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int32_t id : unspellable) logits[id] = kNegInf;
  for (int32_t id : MinTokensBans()) {
    if (id >= 0 && id < vocab) logits[id] = kNegInf;
  }
  if (matcher_) ApplyGrammarMask(logits, vocab);
  return sampler.Sample(logits, vocab);
}

void ActiveRequest::DeviceSpec(const std::vector<int32_t>& unspellable, DeviceSampling* out) {
  std::vector<int32_t> bans = MinTokensBans();
  if (bans.empty()) {
    sampler.DeviceSpec(unspellable, out);
  } else {
    bans.insert(bans.end(), unspellable.begin(), unspellable.end());
    sampler.DeviceSpec(bans, out);
  }
  out->allowed.clear();
  if (matcher_) {  // the same mask SampleRow applies on the host
    out->allowed.resize(static_cast<size_t>(matcher_->token_grammar().vocab().mask_words()));
    matcher_->FillMask(out->allowed.data());
  }
}

void ActiveRequest::Publish(DeferredToken& d) { notifier_->PostToken(writer_, std::move(d.token)); }

std::optional<Ending> ActiveRequest::Emit(SampleResult r, absl::Time now, ServerMetrics* metrics,
                                         StreamNotifier* notifier, std::vector<DeferredToken>* defer) {
  ++generated;
  metrics->generation_tokens->Increment();
  if (generated == 1) {
    metrics->time_to_first_token->Observe(absl::ToDoubleSeconds(now - req.arrival));
  } else {
    metrics->inter_token_latency->Observe(absl::ToDoubleSeconds(now - last_token));
  }
  last_token = now;
  seq.feed.push_back(r.token);  // fed next step, or kept as pending in a stored session

  Ending end;
  GenerateEvent& ev = end.event;
  bool stopped = false;
  bool stop_token = (req.stop_at_end_of_text && r.token == tok_->EndOfText()) ||
                    std::find(req.stop_tokens.begin(), req.stop_tokens.end(), r.token) !=
                        req.stop_tokens.end();
  if (matcher_) {
    // The mask allowed only what the grammar accepts; end of text only once it is
    // complete, and then it ends the output whatever ignore_eos says.
    if (r.token == tok_->EndOfText() && matcher_->IsComplete()) {
      stop_token = true;
    } else if (!matcher_->Accept(r.token)) {
      return Ending{FinishReason::kError,
                    absl::InternalError("structured output: no token the grammar allows could be drawn"), {}};
    }
  }
  if (stop_token) {
    if (writer_) {  // the writer flushes (End)
      end.flush = true;
      return end;
    }
    ev.text = stop_.Add(decoder_.Flush(), &stopped);
    if (!stopped) ev.text += stop_.Finish();
    return end;
  }
  sampler.Accept(r.token);
  TokenEvent te;
  te.token = r.token;
  if (req.logprobs) {
    te.logprob = r.logprob;
    te.top = std::move(r.top);
  }
  ev.tokens.push_back(std::move(te));
  if (writer_) {  // no stop strings: no decision needs the text (StreamWriter)
    if ((matcher_ && !matcher_->CanContinue()) || generated >= req.max_tokens) {
      end.flush = true;  // the grammar is complete, or max_tokens
      end.reason = generated >= req.max_tokens && !(matcher_ && !matcher_->CanContinue()) ? FinishReason::kLength
                                                                                          : FinishReason::kStop;
      return end;
    }
    if (defer) {
      defer->push_back(DeferredToken{this, std::move(ev.tokens.back())});
    } else {
      notifier_->PostToken(writer_, std::move(ev.tokens.back()));
    }
    return std::nullopt;
  }
  ev.text = stop_.Add(decoder_.Push(r.token), &stopped);
  if (stopped) return end;
  if (matcher_ && !matcher_->CanContinue()) {  // the grammar is complete: nothing may follow
    ev.text += stop_.Add(decoder_.Flush(), &stopped);
    if (!stopped) ev.text += stop_.Finish();
    return end;
  }
  if (generated >= req.max_tokens) {
    ev.text += stop_.Add(decoder_.Flush(), &stopped);
    if (!stopped) ev.text += stop_.Finish();
    end.reason = stopped ? FinishReason::kStop : FinishReason::kLength;
    return end;
  }
  bool wake = false;
  if (!stream->Push(std::move(ev), notifier ? &wake : nullptr)) {
    return Ending{FinishReason::kSlowClient,
                  absl::ResourceExhaustedError("the client read the stream too slowly"), {}};
  }
  if (wake) notifier->Add(stream);
  return std::nullopt;
}

void ActiveRequest::End(Ending e, absl::Time now, ServerMetrics* metrics) {
  seq.done = true;
  e.event.completion_tokens = generated;
  e.event.cached_tokens = static_cast<int>(std::min(cache_start, req.prompt.size()));
  if (!writer_) {
    PushFinal(*stream, std::move(e), now, metrics);
    return;
  }
  // After every token event posted before it, on the writer's thread.
  const bool flush = e.flush;
  GenerateEvent ev = FinalEvent(*stream, std::move(e), now, metrics);
  notifier_->Post([w = writer_, ev = std::move(ev), flush]() mutable { w->Final(std::move(ev), flush); });
}

void EndUnstarted(const std::shared_ptr<RequestStream>& s, FinishReason reason,
                  absl::Status status, ServerMetrics* metrics) {
  PushFinal(*s, Ending{reason, std::move(status), {}}, absl::Now(), metrics);
}

}  // namespace rwkvx
