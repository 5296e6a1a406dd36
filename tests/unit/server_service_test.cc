// Service validation against a scheduler over the fake backend.
#include <cmath>

#include "engine/tokenizer.h"
#include "gtest/gtest.h"
#include "server/service.h"
#include "server/testing/fake_backend.h"
#include "server/testing/stream_collector.h"

namespace rwkvx {
namespace {

struct Env {
  Env() {
    sched = std::make_unique<Scheduler>(std::make_unique<testing::FakeBackend>(), tok.get(),
                                        SchedulerOptions{}, &metrics);
    sched->Start();
    ModelDescription d;
    d.id = "m";
    d.vocab = 257;
    ServiceLimits lim;
    lim.max_tokens = 100;
    lim.max_prompt_tokens = 50;
    svc = std::make_unique<Service>(sched.get(), tok.get(), d, lim);
  }
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  ServerMetrics metrics;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<Service> svc;
};

GenerateParams Ok() {
  GenerateParams p;
  p.prompt_text = "hello";
  p.max_tokens = 4;
  p.temperature = 0;
  return p;
}

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
  p = Ok(); p.prompt_text = ""; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt_text = std::string("\xc3\x28"); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt_text = std::string(51, 'a'); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.max_tokens = 0; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.max_tokens = 101; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.temperature = -1; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.temperature = std::nan(""); expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_p = 2; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_k = -1; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.n = 0; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.top_logprobs = 21; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.stop = {""}; expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt_text.reset(); p.prompt_ids = std::vector<int64_t>{1, 300};
  expect(p, absl::StatusCode::kInvalidArgument);
  p = Ok(); p.prompt_text.reset(); expect(p, absl::StatusCode::kInvalidArgument);
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
  EXPECT_FALSE(BuildChatPrompt({{"tool", "x"}}).ok());
  auto cont = BuildChatPrompt({{"user", "q"}, {"assistant", "partial"}});
  EXPECT_EQ(*cont, "User: q\n\nAssistant: partial");
}

}  // namespace
}  // namespace rwkvx
