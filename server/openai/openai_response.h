// OpenAI-compatible response bodies: non-streaming objects (text_completion,
// chat.completion) and SSE chunks (text_completion, chat.completion.chunk) built from
// the scheduler's GenerateEvents. One instance per HTTP request, used by one thread
// (the connection's strand).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/openai/openai_request.h"
#include "server/openai/openai_tools.h"
#include "server/request.h"

namespace rwkvx {

class OpenAiResponder {
 public:
  OpenAiResponder(ApiKind kind, std::string id, std::string model, int64_t created,
                  const Tokenizer* tok, int n, bool logprobs, bool include_usage);

  // echo (completions): `prompt` comes before each choice's text.
  void SetEcho(std::string prompt) { echo_ = std::move(prompt); }
  // chat with tools: a reply that is a tool call comes back as `tool_calls` (streamed as
  // tool-call deltas) with finish_reason "tool_calls".
  void SetTools() { tools_ = true; }

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
    bool echoed = false;
    ToolCallReader reader;  // streaming with tools
    std::vector<std::string> call_ids;  // one per streamed call
  };
  std::string Chunk(int index, const std::string& text, const std::vector<TokenEvent>& toks,
                    FinishReason finish, bool role, const nlohmann::json* tool_calls = nullptr,
                    bool tool_finish = false) const;
  // Streaming with tools: the chunks of one event's text (content and tool-call deltas).
  std::string ToolChunks(int index, const GenerateEvent& ev);
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
  std::string echo_;
  bool tools_ = false;
};

}  // namespace rwkvx
