#include "gtest/gtest.h"
#include "server/openai/openai_request.h"

namespace rwkvx {
namespace {

TEST(OpenAiRequestTest, CompletionFields) {
  auto r = ParseOpenAiRequest(ApiKind::kCompletion, R"({
    "model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "top_k": 3, "presence_penalty": 0.1, "frequency_penalty": 0.2, "seed": 5, "n": 2,
    "stop": ["a", "b"], "stream": true, "stream_options": {"include_usage": true},
    "logprobs": 2, "user": "u"})", 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->params.prompt.text, "hi");
  EXPECT_EQ(*r->params.max_tokens, 7);
  EXPECT_DOUBLE_EQ(*r->params.temperature, 0.5);
  EXPECT_EQ(*r->params.top_k, 3);
  EXPECT_EQ(*r->params.seed, 5u);
  EXPECT_EQ(r->params.n, 2);
  EXPECT_EQ(r->params.stop.size(), 2u);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->params.logprobs);
  EXPECT_EQ(r->params.top_logprobs, 2);
}

TEST(OpenAiRequestTest, PromptForms) {
  auto a = ParseOpenAiRequest(ApiKind::kCompletion, R"({"prompt": [1, 2, 3]})", 64);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->params.prompt.ids->size(), 3u);
  auto b = ParseOpenAiRequest(ApiKind::kCompletion, R"({"prompt": ["x"]})", 64);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b->params.prompt.text, "x");
  auto c = ParseOpenAiRequest(ApiKind::kCompletion, R"({"prompt": ["x", "y"]})", 64);
  EXPECT_FALSE(c.ok());
}

TEST(OpenAiRequestTest, ChatBuildsWorldPrompt) {
  auto r = ParseOpenAiRequest(ApiKind::kChat, R"({"messages": [
      {"role": "system", "content": "Be nice."},
      {"role": "user", "content": [{"type": "text", "text": "Hi\n\n\nthere"}]}]})", 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->params.prompt.text, "System: Be nice.\n\nUser: Hi\nthere\n\nAssistant:");
  ASSERT_EQ(r->params.stop.size(), 1u);
  EXPECT_EQ(r->params.stop[0], "\n\nUser:");
}

TEST(OpenAiRequestTest, RejectsBadTypesAndJson) {
  const char* bad[] = {
      "", "{", "[]", "null", R"({"prompt": 1})", R"({"prompt": "x", "max_tokens": 1.5})",
      R"({"prompt": "x", "max_tokens": "3"})", R"({"prompt": "x", "temperature": true})",
      R"({"prompt": "x", "stream": "yes"})", R"({"prompt": "x", "stop": [1]})",
      R"({"prompt": "x", "max_tokens": 18446744073709551615})", "{\"prompt\": \"\xff\"}",
      R"({"prompt": "x", "echo": 1})", R"({"prompt": "x", "logit_bias": {"a": 2}})",
  };
  for (const char* b : bad) {
    auto r = ParseOpenAiRequest(ApiKind::kCompletion, b, 64);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << b;
  }
}

// stream_options: include_usage read, include_obfuscation false accepted (nothing is ever
// padded), anything else refused by name rather than ignored.
TEST(OpenAiRequestTest, StreamOptionsAreAllRead) {
  auto ok = ParseOpenAiRequest(
      ApiKind::kCompletion, R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": true, "include_obfuscation": false}})", 64);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->include_usage);
  for (const char* b : {R"({"prompt": "x", "stream_options": {"continuous_usage_stats": true}})",
                        R"({"prompt": "x", "stream_options": {"include_obfuscation": true}})"}) {
    auto r = ParseOpenAiRequest(ApiKind::kCompletion, b, 64);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << b;
    EXPECT_NE(r.status().message().find("'stream_options."), std::string::npos) << r.status();
  }
}

TEST(OpenAiRequestTest, JsonDepth) {
  std::string deep = R"({"prompt": "x", "a": )" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_FALSE(ParseOpenAiRequest(ApiKind::kCompletion, deep, 64).ok());
  EXPECT_TRUE(ParseOpenAiRequest(ApiKind::kCompletion, deep, 200).ok());
  // Brackets inside strings do not count.
  std::string s = R"({"prompt": ")" + std::string(100, '[') + R"("})";
  EXPECT_TRUE(CheckJsonDepth(s, 2).ok());
}

}  // namespace
}  // namespace rwkvx
