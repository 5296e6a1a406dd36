// Service against a scheduler over the fake backend: generation and its validation
// (server_service_sessions_test.cc: the session API and the client-held flow).
#include "tests/unit/server_service_env.h"

#include <cmath>

#include "gtest/gtest.h"
#include "server/testing/stream_collector.h"

namespace rwkvx {
namespace {

using testing::ServiceEnv;
using Env = ServiceEnv;

GenerateParams Ok() { return testing::GreedyParams("hello", 4); }

TEST(ServiceTest, GeneratesNChoices) {
  Env e;
  auto p = Ok();
  p.n = 3;
  auto s = e.svc->Generate(p);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 3u);
  for (auto& st : *s) {
    testing::StreamCollector c(st);
    EXPECT_EQ(c.WaitFinal().final_event.completion_tokens, 4);
  }
}

TEST(ServiceTest, Validation) {
  Env e;
  auto expect = [&](GenerateParams p, absl::StatusCode code) {
    EXPECT_EQ(e.svc->Generate(p).status().code(), code);
  };
  auto p = Ok(); p.model = "other"; expect(p, absl::StatusCode::kNotFound);
  p = Ok(); p.prompt.text = ""; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt.text = std::string("\xc3\x28"); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt.text = std::string(51, 'a'); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.max_tokens = 0; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.max_tokens = 101; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.temperature = -1; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.temperature = std::nan(""); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_p = 2; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_k = -1; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.n = 0; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_logprobs = 21; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.stop = {""}; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt.text.reset(); p.prompt.ids = std::vector<int64_t>{1, 300};
  expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt.text.reset(); expect(p, absl::StatusCode::kInvalidArgument);
}

TEST(ServiceTest, TokenizeDetokenize) {
  Env e;
  auto ids = e.svc->Tokenize("", "ab");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{'a' + 1, 'b' + 1}));
  auto text = e.svc->Detokenize("m", {'a' + 1, 'b' + 1});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "ab");
  EXPECT_FALSE(e.svc->Detokenize("m", {-1}).ok());
  EXPECT_EQ(e.svc->Tokenize("x", "a").status().code(), absl::StatusCode::kNotFound);
}

TEST(ChatPromptTest, Format) {
  auto p = BuildChatPrompt({{"user", "hi"}, {"assistant", "hello"}, {"user", "bye\r\n\r\nnow"}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "User: hi\n\nAssistant: hello\n\nUser: bye\nnow\n\nAssistant:");
  EXPECT_FALSE(BuildChatPrompt({}).ok());
  EXPECT_FALSE(BuildChatPrompt({{"function", "x"}}).ok());
  // Tool calls and results (tools on /v1/chat/completions).
  auto tools = BuildChatPrompt({{"user", "w?", {}}, {"assistant", "", {{"f", R"({"a":1})"}}}, {"tool", "sun", {}}});
  ASSERT_TRUE(tools.ok());
  EXPECT_EQ(*tools, "User: w?\n\nAssistant: <tool_call>{\"name\":\"f\",\"arguments\":{\"a\":1}}</tool_call>"
                    "\n\nTool: sun\n\nAssistant:");
  EXPECT_FALSE(BuildChatPrompt({{"user", "x", {{"f", "{}"}}}}).ok());  // only the assistant calls
  auto cont = BuildChatPrompt({{"user", "q"}, {"assistant", "partial"}});
  EXPECT_EQ(*cont, "User: q\n\nAssistant: partial");
}

}  // namespace
}  // namespace rwkvx
