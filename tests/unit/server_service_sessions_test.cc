// Service: the session API (one prompt validation shared with Generate) and the
// client-held flow (GenerateFromSnapshot), against a scheduler over the fake backend.
#include <thread>

#include "gtest/gtest.h"
#include "server/testing/stream_collector.h"
#include "tests/unit/server_service_env.h"

namespace rwkvx {
namespace {

using testing::Await;
using testing::GreedyParams;
using testing::ServiceEnv;
using Info = absl::StatusOr<StoredSessionInfo>;
using Bytes = absl::StatusOr<std::string>;
using Started = absl::StatusOr<std::shared_ptr<ClientHeldGeneration>>;

PromptInput Text(std::string t) { return PromptInput{std::move(t), std::nullopt}; }
PromptInput Ids(std::vector<int64_t> ids) { return PromptInput{std::nullopt, std::move(ids)}; }

Info Create(ServiceEnv& e, std::optional<std::string> name, PromptInput prompt) {
  return Await<Info>([&](auto cb) { e.svc->CreateSession(name, prompt, cb); });
}
Info Append(ServiceEnv& e, const std::string& name, PromptInput prompt) {
  return Await<Info>([&](auto cb) { e.svc->AppendToSession(name, prompt, cb); });
}
Info Get(ServiceEnv& e, const std::string& name) {
  return Await<Info>([&](auto cb) { e.svc->GetSession(name, cb); });
}
std::vector<StoredSessionInfo> List(ServiceEnv& e) {
  return Await<std::vector<StoredSessionInfo>>([&](auto cb) { e.svc->ListSessions(cb); });
}
Started ClientHeld(ServiceEnv& e, const GenerateParams& p, std::optional<std::string> snap) {
  return Await<Started>([&](auto cb) { e.svc->GenerateFromSnapshot(p, snap, cb); });
}
std::vector<int32_t> ColdTokens(ServiceEnv& e, const std::string& prompt, int n) {
  auto s = e.svc->Generate(GreedyParams(prompt, n));
  EXPECT_TRUE(s.ok()) << s.status();
  return testing::StreamCollector(s->front()).WaitFinal().tokens;
}

TEST(ServiceSessionsTest, PromptValidationIsGenerates) {
  ServiceEnv e;
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(Create(e, "a", Text("\xc3\x28")).status().code(), bad);
  EXPECT_EQ(Create(e, "a", Ids({1, 300})).status().code(), bad);
  EXPECT_EQ(Create(e, "a", Ids({-1})).status().code(), bad);
  EXPECT_EQ(Create(e, "a", Text(std::string(51, 'a'))).status().code(), bad);
  EXPECT_EQ(Create(e, "a", PromptInput{"x", std::vector<int64_t>{1}}).status().code(), bad);
  EXPECT_EQ(Create(e, std::string(129, 'a'), Text("x")).status().code(), bad);
  ASSERT_TRUE(Create(e, "a", {}).ok());
  EXPECT_EQ(Append(e, "a", Text("\xff")).status().code(), bad);
  EXPECT_EQ(Append(e, "a", Ids({257})).status().code(), bad);
  EXPECT_EQ(Append(e, "a", Text(std::string(51, 'a'))).status().code(), bad);
  // The same rules as Generate's prompt (which, unlike these, must not be empty).
  GenerateParams p = GreedyParams("", 2);
  p.prompt.ids = std::vector<int64_t>{300};
  p.prompt.text.reset();
  EXPECT_EQ(e.svc->Generate(p).status().code(), bad);
  EXPECT_EQ(Get(e, "a")->tokens_seen + Get(e, "a")->pending_tokens, 0);
}

TEST(ServiceSessionsTest, CreateAppendGetListDelete) {
  ServiceEnv e;
  auto a = Create(e, "s1", Text("hello"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name, "s1");
  EXPECT_EQ(a->tokens_seen + a->pending_tokens, 5);
  auto b = Append(e, "s1", Ids({2, 3}));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->tokens_seen + b->pending_tokens, 7);
  auto picked = Create(e, std::nullopt, {});
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ(picked->name.rfind("sess-", 0), 0u) << picked->name;
  EXPECT_EQ(Create(e, "s1", {}).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(List(e).size(), 2u);
  // (The fake backend cannot fork: the source is looked up first.)
  auto fork = Await<Info>([&](auto cb) { e.svc->ForkSession("nope", std::nullopt, cb); });
  EXPECT_EQ(fork.status().code(), absl::StatusCode::kNotFound);
  for (const auto& name : {std::string("s1"), picked->name}) {
    EXPECT_TRUE(Await<absl::Status>([&](auto cb) { e.svc->DeleteSession(name, cb); }).ok());
  }
  EXPECT_EQ(Get(e, "s1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(List(e).empty());
}

TEST(ServiceSessionsTest, SessionTurnsEqualOneColdRequest) {
  ServiceEnv e;
  ASSERT_TRUE(Create(e, "t", Text("hel")).ok());
  GenerateParams p = GreedyParams("lo", 5);
  p.session_id = "t";
  auto s = e.svc->Generate(p);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(testing::StreamCollector(s->front()).WaitFinal().tokens, ColdTokens(e, "hello", 5));
}

TEST(ServiceSessionsTest, ClientHeldFromNothingEqualsColdAndLeavesNothing) {
  ServiceEnv e;
  auto gen = ClientHeld(e, GreedyParams("hello", 4), std::nullopt);
  ASSERT_TRUE(gen.ok()) << gen.status();
  testing::StreamCollector c((*gen)->stream());
  testing::Collected& got = c.WaitFinal();
  ASSERT_TRUE(got.finished);
  EXPECT_EQ(got.final_event.finish, FinishReason::kLength);
  Bytes snap = Await<Bytes>([&](auto cb) { (*gen)->Finish(got.final_event, cb); });
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_FALSE(snap->empty());
  EXPECT_EQ(got.tokens, ColdTokens(e, "hello", 4));
  EXPECT_TRUE(List(e).empty());
  EXPECT_EQ(e.backend->live.load(), 0);  // the ephemeral session is gone
}

TEST(ServiceSessionsTest, ClientHeldRefusals) {
  ServiceEnv e;
  const auto bad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(ClientHeld(e, GreedyParams("x", 2), std::string("not a snapshot")).status().code(), bad);
  EXPECT_EQ(ClientHeld(e, GreedyParams("x", 0), std::nullopt).status().code(), bad);
  EXPECT_EQ(ClientHeld(e, GreedyParams("\xc3\x28", 2), std::nullopt).status().code(), bad);
  GenerateParams two = GreedyParams("x", 2);
  two.n = 2;
  EXPECT_EQ(ClientHeld(e, two, std::nullopt).status().code(), bad);
  GenerateParams named = GreedyParams("x", 2);
  named.session_id = "s";
  EXPECT_EQ(ClientHeld(e, named, std::nullopt).status().code(), bad);
  List(e);  // runs after every command above
  EXPECT_EQ(e.backend->live.load(), 0);
}

TEST(ServiceSessionsTest, ClientHeldFailureAndAbandonDeleteTheSession) {
  ServiceEnv e;
  {
    // Finished with a failed final event: the error, and the session is deleted.
    auto gen = ClientHeld(e, GreedyParams("abc", 3), std::nullopt);
    ASSERT_TRUE(gen.ok()) << gen.status();
    testing::StreamCollector c((*gen)->stream());
    GenerateEvent failed = c.WaitFinal().final_event;
    failed.finish = FinishReason::kError;
    Bytes r = Await<Bytes>([&](auto cb) { (*gen)->Finish(failed, cb); });
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  }
  {
    // Dropped without Finish: the session is deleted too.
    auto gen = ClientHeld(e, GreedyParams("abc", 3), std::nullopt);
    ASSERT_TRUE(gen.ok()) << gen.status();
    testing::StreamCollector c((*gen)->stream());
    c.WaitFinal();
  }
  List(e);  // runs after the deletions
  EXPECT_EQ(e.backend->live.load(), 0);
}

TEST(ServiceSessionsTest, PromptsAreTokenizedOnTheCallersThread) {
  ServiceEnv e;
  ASSERT_TRUE(Create(e, "s", Text("create")).ok());
  ASSERT_TRUE(Append(e, "s", Text("append")).ok());
  auto gen = ClientHeld(e, GreedyParams("client held", 2), std::nullopt);
  ASSERT_TRUE(gen.ok()) << gen.status();
  testing::StreamCollector c((*gen)->stream());
  ASSERT_TRUE(Await<Bytes>([&](auto cb) { (*gen)->Finish(c.WaitFinal().final_event, cb); }).ok());
  EXPECT_EQ(e.tok.encode_threads(), std::set<std::thread::id>{std::this_thread::get_id()});
}

}  // namespace
}  // namespace rwkvx
