#include "server/scheduling/stream_writer.h"

#include <utility>

namespace rwkvx {

StreamWriter::StreamWriter(std::shared_ptr<RequestStream> stream, const Tokenizer* tok)
    : stream_(std::move(stream)), decoder_(tok), stop_({}) {}

void StreamWriter::Token(GenerateEvent ev) {
  if (slow()) return;  // the request ends at the scheduler's next check
  bool stopped = false;
  for (const TokenEvent& t : ev.tokens) ev.text += stop_.Add(decoder_.Push(t.token), &stopped);
  if (!stream_->Push(std::move(ev))) slow_.store(true, std::memory_order_release);
}

void StreamWriter::Final(GenerateEvent ev, bool flush) {
  bool stopped = false;
  for (const TokenEvent& t : ev.tokens) ev.text += stop_.Add(decoder_.Push(t.token), &stopped);
  if (flush) {
    ev.text += stop_.Add(decoder_.Flush(), &stopped);
    if (!stopped) ev.text += stop_.Finish();
  }
  stream_->PushFinal(std::move(ev));
}

}  // namespace rwkvx
