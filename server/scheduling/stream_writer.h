// StreamWriter: the text side of a request whose text never decides anything (no stop
// strings): its detokenizer and its stream pushes, run on the StreamNotifier's thread in
// the order the scheduler posted them, while the scheduler thread goes on with the next
// step. The scheduler keeps every decision (stop tokens, max_tokens, the grammar, the
// sampler's state); a request with stop strings decodes on the scheduler thread instead
// (its text decides where it ends) and has no writer.
// A stream whose reader fell too far behind (RequestStream::Push refused the event) is
// marked slow(): later token events are dropped and the scheduler ends the request at its
// next check (finish reason slow_client), whose final event still goes through.
// Threads: Token and Final on one thread at a time, in posting order (the notifier's
// thread, or the scheduler's when there is no notifier); slow() from any thread.
#pragma once

#include <atomic>
#include <memory>

#include "engine/tokenizer/tokenizer.h"
#include "server/request.h"
#include "server/scheduling/stop_text.h"

namespace rwkvx {

class StreamWriter {
 public:
  StreamWriter(std::shared_ptr<RequestStream> stream, const Tokenizer* tok);
  // A token event (ev.tokens holds the token, no text yet): its text decoded, then pushed.
  void Token(GenerateEvent ev);
  void Token(TokenEvent t) {  // an event of that one token
    GenerateEvent ev;
    ev.tokens.push_back(std::move(t));
    Token(std::move(ev));
  }
  // The final event: the text of ev.tokens, then with `flush` whatever the decoder and the
  // stop matcher held back.
  void Final(GenerateEvent ev, bool flush);
  bool slow() const { return slow_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<RequestStream> stream_;
  StreamDecoder decoder_;
  StopTextMatcher stop_;  // no stop strings: releases text as a request with them would
  std::atomic<bool> slow_{false};
};

}  // namespace rwkvx
