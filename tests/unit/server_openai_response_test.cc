#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/openai/openai_response.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;

GenerateEvent Tok(int32_t id, std::string text) {
  GenerateEvent e;
  TokenEvent t;
  t.token = id;
  t.logprob = -0.5f;
  t.top = {{id, -0.5f}, {7, -1.5f}};
  e.tokens.push_back(t);
  e.text = std::move(text);
  return e;
}

GenerateEvent Final(FinishReason r, int prompt, int completion, int cached = 0) {
  GenerateEvent e;
  e.final = true;
  e.finish = r;
  e.prompt_tokens = prompt;
  e.completion_tokens = completion;
  e.cached_tokens = cached;
  return e;
}

std::vector<json> Events(const std::string& sse) {
  std::vector<json> out;
  size_t pos = 0;
  while ((pos = sse.find("data: ", pos)) != std::string::npos) {
    size_t end = sse.find("\n\n", pos);
    std::string d = sse.substr(pos + 6, end - pos - 6);
    out.push_back(d == "[DONE]" ? json("[DONE]") : json::parse(d));
    pos = end;
  }
  return out;
}

TEST(OpenAiResponseTest, CompletionBodyWithLogprobs) {
  auto tok = MakeByteTokenizer();
  OpenAiResponder r(ApiKind::kCompletion, "cmpl-1", "m", 123, tok.get(), 1, true, false);
  r.Add(0, Tok('a' + 1, "a"));
  r.Add(0, Tok('b' + 1, "b"));
  r.Add(0, Final(FinishReason::kLength, 3, 2));
  json j = json::parse(r.Body());
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "ab");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"], json({"a", "b"}));
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"], json({0, 1}));
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

// Prompt tokens served from the prefix cache show as usage.prompt_tokens_details.cached_tokens,
// in bodies and in the stream's usage chunk.
TEST(OpenAiResponseTest, CachedPromptTokensInUsage) {
  auto tok = MakeByteTokenizer();
  OpenAiResponder body(ApiKind::kChat, "chatcmpl-2", "m", 1, tok.get(), 1, false, false);
  body.Add(0, Final(FinishReason::kStop, 40, 3, 32));
  json j = json::parse(body.Body());
  EXPECT_EQ(j["usage"]["prompt_tokens"], 40);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 32);
  OpenAiResponder stream(ApiKind::kCompletion, "cmpl-2", "m", 1, tok.get(), 1, false, true);
  std::string sse = stream.StreamStart();  // one call per statement: the order matters
  sse += stream.StreamEvent(0, Final(FinishReason::kLength, 9, 1, 8));
  sse += stream.StreamEnd();
  auto ev = Events(sse);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[ev.size() - 2]["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

TEST(OpenAiResponseTest, ChatStreamWithUsage) {
  auto tok = MakeByteTokenizer();
  OpenAiResponder r(ApiKind::kChat, "chatcmpl-1", "m", 1, tok.get(), 2, false, true);
  std::string sse = r.StreamStart();
  sse += r.StreamEvent(0, Tok('h' + 1, "h"));
  sse += r.StreamEvent(1, Tok('y' + 1, "y"));
  sse += r.StreamEvent(0, Final(FinishReason::kStop, 4, 1));
  sse += r.StreamEvent(1, Final(FinishReason::kLength, 4, 1));
  sse += r.StreamEnd();
  auto ev = Events(sse);
  ASSERT_EQ(ev.size(), 8u);
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(ev[2]["choices"][0]["delta"]["content"], "h");
  EXPECT_TRUE(ev[2]["usage"].is_null());
  EXPECT_EQ(ev[4]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(ev[6]["choices"].size(), 0u);
  EXPECT_EQ(ev[6]["usage"]["completion_tokens"], 2);
  EXPECT_EQ(ev[6]["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(ev[7], "[DONE]");
}

TEST(OpenAiResponseTest, InvalidUtf8TokenBytesStillValidJson) {
  auto tok = MakeByteTokenizer();
  OpenAiResponder r(ApiKind::kChat, "x", "m", 1, tok.get(), 1, true, false);
  r.Add(0, Tok(0xff + 1, ""));
  r.Add(0, Final(FinishReason::kLength, 1, 1));
  json j = json::parse(r.Body());
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["bytes"], json({255}));
}

}  // namespace
}  // namespace rwkvx
