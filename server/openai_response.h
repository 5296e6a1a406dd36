// OpenAI-compatible response bodies: non-streaming objects (text_completion,
// chat.completion) and SSE chunks (text_completion, chat.completion.chunk) built from
// the scheduler's GenerateEvents. One instance per HTTP request, used by one thread
// (the connection's strand).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "server/openai_request.h"
#include "server/request.h"

namespace rwkvx {

class OpenAiResponder {
 public:
  OpenAiResponder(ApiKind kind, std::string id, std::string model, int64_t created,
                  const Tokenizer* tok, int n, bool logprobs, bool include_usage);

  // Streaming: each returns zero or more complete SSE events ("data: ...\n\n").
  std::string StreamStart();                                // chat: the role deltas
  std::string StreamEvent(int index, const GenerateEvent& ev);
  std::string StreamEnd();                                  // usage chunk + [DONE]
  static std::string StreamError(const std::string& error_json);

  // Non-streaming: accumulate every event, then the body.
  void Add(int index, const GenerateEvent& ev);
  std::string Body() const;

 private:
  struct Choice {
    std::string text;
    std::vector<TokenEvent> tokens;
    FinishReason finish = FinishReason::kNone;
    int completion_tokens = 0;
  };
  std::string Chunk(int index, const std::string& text, const std::vector<TokenEvent>& toks,
                    FinishReason finish, bool role) const;
  void AddUsage(const GenerateEvent& ev, int index);
  std::string LogprobsJson(const std::vector<TokenEvent>& toks, size_t text_offset) const;

  ApiKind kind_;
  std::string id_, model_;
  int64_t created_;
  const Tokenizer* tok_;
  bool logprobs_, include_usage_;
  std::vector<Choice> choices_;
  int prompt_tokens_ = 0;
  int cached_tokens_ = 0;
};

}  // namespace rwkvx
