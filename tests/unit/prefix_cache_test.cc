// The prefix state cache (server/prefix_cache/prefix_cache.h): radix-tree operations, LRU and budget
// with a counting fake backend; exactness through the scheduler on the CPU engine (a
// cache-on server gives the tokens and log-probabilities of a cache-off one, below and
// past the split-invariant length); the chat template renders turn N as a prefix of N+1.
#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/service/chat_format.h"
#include "server/metrics/metrics.h"
#include "server/prefix_cache/prefix_cache.h"
#include "server/scheduling/scheduler.h"

namespace rwkvx {
namespace {

// Sessions are token lists; a fork copies the list. Every session is charged `bytes`.
class ListBackend : public Backend {
 public:
  ListBackend() {
    auto m = std::make_shared<Model>();
    m->shape.vocab = 4;
    model_ = m;
  }
  std::string Name() const override { return "list"; }
  bool SplitInvariant() const override { return invariant; }
  const Model& model() const override { return *model_; }
  absl::StatusOr<SessionId> CreateSession() override {
    sessions_[next_] = {};
    return next_++;
  }
  absl::Status FreeSession(SessionId id) override {
    return sessions_.erase(id) ? absl::OkStatus() : absl::NotFoundError("no session");
  }
  absl::StatusOr<SessionState> ExportSession(SessionId) const override { return absl::UnimplementedError("list"); }
  absl::StatusOr<SessionId> ImportSession(const SessionState&) override { return absl::UnimplementedError("list"); }
  absl::StatusOr<SessionId> ForkSession(SessionId id) override {
    if (!sessions_.count(id)) return absl::NotFoundError("no session");
    sessions_[next_] = sessions_[id];
    return next_++;
  }
  absl::Status Step(const std::vector<StepInput>& items, std::vector<float>* logits) override {
    logits->clear();
    for (const auto& in : items) {
      auto& s = sessions_.at(in.session);
      s.insert(s.end(), in.tokens.begin(), in.tokens.end());
      if (in.want_logits) logits->insert(logits->end(), 4, static_cast<float>(s.size()));
    }
    return absl::OkStatus();
  }
  bool invariant = false;  // what SplitInvariant() says
  void SetModel(std::shared_ptr<const Model> m) { model_ = std::move(m); }
  size_t SessionBytes(SessionId id) const override { return sessions_.count(id) ? bytes : 0; }
  size_t SessionKvTokens(SessionId) const override { return 0; }
  MemoryInfo Memory() const override { return {}; }
  size_t MaxSessionBytes() const override { return bytes; }
  size_t SessionBytesFor(size_t) const override { return bytes; }
  size_t StepBytes(SessionId, size_t) const override { return 0; }

  // A session whose state is `tokens`.
  SessionId Make(const std::vector<int32_t>& tokens) {
    SessionId id = *CreateSession();
    sessions_[id] = tokens;
    return id;
  }
  const std::vector<int32_t>& TokensOf(SessionId id) { return sessions_.at(id); }
  size_t live() const { return sessions_.size(); }
  size_t bytes = 1000;

 private:
  std::shared_ptr<const Model> model_;
  std::map<SessionId, std::vector<int32_t>> sessions_;
  SessionId next_ = 1;
};

std::vector<int32_t> Seq(int n, int salt = 0) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = 1 + (i * 7 + salt * 13 + i * i * salt) % 250;
  return t;
}

std::vector<int32_t> Cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

PrefixCacheOptions Opts(size_t budget, long long split_invariant = LLONG_MAX, int chunk = 8) {
  PrefixCacheOptions o;
  o.budget_bytes = budget;
  o.min_tokens = 2;
  o.split_invariant_tokens = split_invariant;
  o.prefill_chunk = chunk;
  return o;
}

void Put(ListBackend& be, PrefixCache& c, const std::vector<int32_t>& t, bool logits = false) {
  SessionId s = be.Make(t);
  const float l[4] = {1, 2, 3, 4};
  c.Insert(t.data(), t.size(), s, logits ? l : nullptr);
  ASSERT_TRUE(be.FreeSession(s).ok());
}

TEST(PrefixCacheTree, DeepestPrefixCheckpointWinsAndIsForked) {
  ListBackend be;
  PrefixCache c(&be, Opts(1 << 20), nullptr);
  const auto a = Seq(10, 1);
  Put(be, c, std::vector<int32_t>(a.begin(), a.begin() + 4));
  Put(be, c, a);
  Put(be, c, Cat(std::vector<int32_t>(a.begin(), a.begin() + 6), Seq(5, 2)));  // splits the edge at 6
  EXPECT_EQ(c.stats().entries, 3u);

  auto hit = c.Lookup(Cat(a, Seq(3, 3)));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 10u);
  EXPECT_TRUE(hit->logits.empty());
  EXPECT_EQ(be.TokensOf(hit->session), a);  // a fork of the checkpoint, the caller's own
  ASSERT_TRUE(be.FreeSession(hit->session).ok());

  // Diverging inside the edge of the deepest node: the shallower checkpoint serves.
  auto mid = c.Lookup(Cat(std::vector<int32_t>(a.begin(), a.begin() + 8), Seq(4, 4)));
  ASSERT_TRUE(mid.has_value());
  EXPECT_EQ(mid->tokens, 4u);
  ASSERT_TRUE(be.FreeSession(mid->session).ok());

  // The whole prompt cached without logits: one token short is not cached, so the next
  // checkpoint up (4) serves, leaving at least one token to feed.
  auto whole = c.Lookup(a);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->tokens, 4u);
  ASSERT_TRUE(be.FreeSession(whole->session).ok());

  EXPECT_FALSE(c.Lookup(Seq(12, 9)).has_value());
  EXPECT_EQ(c.stats().hits, 3);
  EXPECT_EQ(c.stats().misses, 1);
  EXPECT_EQ(c.stats().saved_tokens, 18);
  EXPECT_EQ(be.live(), 3u);  // only the checkpoints
}

TEST(PrefixCacheTree, LookupReportsWhereThePromptBranchesOff) {
  ListBackend be;
  PrefixCache c(&be, Opts(1 << 20), nullptr);
  const auto sys = Seq(12, 11);
  Put(be, c, Cat(sys, Seq(6, 12)));
  size_t shared = 99;
  auto miss = c.Lookup(Cat(sys, Seq(5, 13)), &shared);  // no checkpoint at 12 yet
  EXPECT_FALSE(miss.has_value());
  EXPECT_EQ(shared, 12u);
  Put(be, c, sys);
  auto hit = c.Lookup(Cat(sys, Seq(5, 14)), &shared);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 12u);
  EXPECT_EQ(shared, 12u);
  (void)be.FreeSession(hit->session);
  EXPECT_FALSE(c.Lookup(Seq(3, 15), &shared).has_value());
  EXPECT_EQ(shared, 0u);
}

TEST(PrefixCacheTree, WholePromptWithLogitsIsServedWithoutFeeding) {
  ListBackend be;
  PrefixCache c(&be, Opts(1 << 20), nullptr);
  const auto a = Seq(9, 5);
  Put(be, c, a, /*logits=*/true);
  auto hit = c.Lookup(a);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, a.size());
  EXPECT_EQ(hit->logits, (std::vector<float>{1, 2, 3, 4}));
  ASSERT_TRUE(be.FreeSession(hit->session).ok());
}

TEST(PrefixCacheTree, PastTheSplitInvariantLengthOnlyAlignedCheckpointsServe) {
  ListBackend be;
  PrefixCache c(&be, Opts(1 << 20, /*split_invariant=*/20, /*chunk=*/8), nullptr);
  EXPECT_TRUE(c.Checkpointable(13, false));   // <= 20: any feeding
  EXPECT_FALSE(c.Checkpointable(24, false));  // generated tokens past 20
  EXPECT_TRUE(c.Checkpointable(24, true));    // aligned prompt chunks
  EXPECT_FALSE(c.Checkpointable(25, true));
  EXPECT_FALSE(c.Checkpointable(1, false));   // under min_tokens
  const auto p = Seq(40, 6);
  Put(be, c, std::vector<int32_t>(p.begin(), p.begin() + 13));
  Put(be, c, std::vector<int32_t>(p.begin(), p.begin() + 16));
  // A prompt of 18 <= 20: the deepest one (16).
  auto a = c.Lookup(std::vector<int32_t>(p.begin(), p.begin() + 18));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->tokens, 16u);
  (void)be.FreeSession(a->session);
  Put(be, c, std::vector<int32_t>(p.begin(), p.begin() + 17));
  // A prompt of 40 > 20: 17 and 13 are off the chunk grid; 16 is on it.
  auto b = c.Lookup(p);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->tokens, 16u);
  (void)be.FreeSession(b->session);
}

TEST(PrefixCacheTree, LruEvictionKeepsTheBudgetAndPrunesTheTree) {
  ListBackend be;
  be.bytes = 100;
  PrefixCache c(&be, Opts(350), nullptr);
  const auto base = Seq(6, 7);
  std::vector<std::vector<int32_t>> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(Cat(base, Seq(4, 10 + i)));
  for (const auto& k : keys) Put(be, c, k);
  EXPECT_EQ(c.stats().bytes, 300u);
  // Use the oldest: the second becomes the least recently used.
  auto h = c.Lookup(Cat(keys[0], {1}));
  ASSERT_TRUE(h.has_value());
  (void)be.FreeSession(h->session);
  Put(be, c, Cat(base, Seq(4, 20)));
  EXPECT_EQ(c.stats().entries, 3u);
  EXPECT_EQ(c.stats().evictions, 1);
  EXPECT_LE(c.stats().bytes, 350u);
  auto gone = c.Lookup(Cat(keys[1], {1}));
  EXPECT_FALSE(gone.has_value());
  auto kept = c.Lookup(Cat(keys[0], {1}));
  ASSERT_TRUE(kept.has_value());
  (void)be.FreeSession(kept->session);
  EXPECT_EQ(be.live(), 3u);
  // Larger than the whole budget: not kept (an adopted session is freed).
  be.bytes = 400;
  SessionId big = be.Make(Seq(8, 30));
  c.Adopt(Seq(8, 30).data(), 8, big, nullptr);
  EXPECT_EQ(c.stats().entries, 3u);
  EXPECT_EQ(be.live(), 3u);
  // Evicting everything leaves the root only.
  while (c.EvictOne()) {}
  EXPECT_EQ(c.stats().bytes, 0u);
  EXPECT_EQ(c.NodeCount(), 1u);
  EXPECT_EQ(be.live(), 0u);
}

TEST(PrefixCacheTree, DuplicatesAreTouchedNotCopiedAndTheDestructorFreesAll) {
  ListBackend be;
  {
    PrefixCache c(&be, Opts(1 << 20), nullptr);
    const auto a = Seq(12, 8);
    Put(be, c, a);
    SessionId again = be.Make(a);
    c.Adopt(a.data(), a.size(), again, nullptr);  // already cached: freed
    EXPECT_EQ(c.stats().entries, 1u);
    EXPECT_EQ(be.live(), 1u);
    // Splits and merges: a key that is a prefix of another, then evictions.
    Put(be, c, std::vector<int32_t>(a.begin(), a.begin() + 5));
    Put(be, c, Cat(std::vector<int32_t>(a.begin(), a.begin() + 5), Seq(3, 9)));
    EXPECT_EQ(c.stats().entries, 3u);
    EXPECT_EQ(be.live(), 3u);
  }
  EXPECT_EQ(be.live(), 0u);
}

TEST(PrefixCacheTree, SpacesKeepInitialStatesApart) {
  // A checkpoint made from an initial state (space 1) never serves a zero-state request
  // (space 0) or another initial state (space 2), and eviction reaches every space.
  ListBackend be;
  PrefixCache c(&be, Opts(1 << 20), nullptr);
  const auto a = Seq(10, 5);
  SessionId s = be.Make(a);
  c.Insert(a.data(), a.size(), s, nullptr, /*space=*/1);
  ASSERT_TRUE(be.FreeSession(s).ok());
  const auto longer = Cat(a, Seq(2, 6));
  EXPECT_FALSE(c.Lookup(longer).has_value());
  EXPECT_FALSE(c.Lookup(longer, nullptr, 2).has_value());
  auto hit = c.Lookup(longer, nullptr, 1);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 10u);
  ASSERT_TRUE(be.FreeSession(hit->session).ok());
  Put(be, c, a);  // the same tokens in space 0: a second, separate checkpoint
  EXPECT_EQ(c.stats().entries, 2u);
  EXPECT_TRUE(c.EvictOne());
  EXPECT_TRUE(c.EvictOne());
  EXPECT_FALSE(c.EvictOne());
  EXPECT_EQ(be.live(), 0u);
}

// ---- exactness through the scheduler on the CPU engine --------------------------------

std::shared_ptr<Model> SmallModel(int chunk, int topk, int max_kv) {
  ModelShape s;
  s.vocab = 257; s.n_embd = 128; s.head_size = 64; s.n_head = 2;
  s.n_rwkv_layer = 2; s.n_attn_layer = 2; s.ffn_dim = 256;
  s.rank_w = 8; s.rank_a = 8; s.rank_v = 4; s.rank_g = 16;
  auto m = MakeRandomModel(s, 21, "prefix-test");
  m->attn.chunk_size = chunk;
  m->attn.topk = topk;
  m->attn.max_kv_cache_size = max_kv;
  m->attn.min_kv_cache_size = max_kv > 0 ? max_kv - 20 : 16000;
  m->attn.kv_cache_window_size = max_kv > 0 ? 10 : 2000;
  return m;
}

struct Out {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::vector<TokenLogprob>> top;
};

// Waits (bounded) for the final event, then returns the stream's tokens. The final event is
// pushed after the request's checkpoints are placed, so the next request can see them.
Out Collect(const std::shared_ptr<RequestStream>& s) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!s->finished() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  std::vector<GenerateEvent> evs;
  s->PopAll(&evs);
  EXPECT_TRUE(s->finished());
  Out out;
  for (auto& e : evs) {
    for (auto& t : e.tokens) {
      out.tokens.push_back(t.token);
      out.logprobs.push_back(t.logprob);
      out.top.push_back(t.top);
    }
  }
  return out;
}

struct Server {
  Server(std::shared_ptr<Model> m, size_t cache_bytes) {
    SchedulerOptions o;
    o.prefill_chunk = 8;
    o.prefix_cache_bytes = cache_bytes;
    o.prefix_cache_min_tokens = 4;
    sched = std::make_unique<Scheduler>(MakeCpuBackend(m), tok.get(), o, &metrics);
    sched->Start();
  }
  std::shared_ptr<RequestStream> Submit(const std::vector<int32_t>& prompt, int max_tokens,
                                        uint64_t seed, float temperature) {
    GenerateRequest r;
    r.prompt = prompt;
    r.max_tokens = max_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = seed;
    r.sampling.top_logprobs = 5;
    r.logprobs = true;
    auto s = std::make_shared<RequestStream>(std::move(r), 1 << 24);
    EXPECT_TRUE(sched->Submit(s).ok());
    return s;
  }
  Out Run(const std::vector<int32_t>& prompt, int max_tokens, uint64_t seed,
          float temperature = 1.0f) {
    return Collect(Submit(prompt, max_tokens, seed, temperature));
  }
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  ServerMetrics metrics;
  std::unique_ptr<Scheduler> sched;
};

void ExpectSame(const Out& a, const Out& b) {
  ASSERT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.logprobs, b.logprobs);  // bit-identical floats
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) {
    ASSERT_EQ(a.top[i].size(), b.top[i].size());
    for (size_t j = 0; j < a.top[i].size(); ++j) {
      EXPECT_EQ(a.top[i][j].token, b.top[i][j].token);
      EXPECT_EQ(a.top[i][j].logprob, b.top[i][j].logprob);
    }
  }
}

// A chat: each turn's prompt is the previous prompt + its generated tokens + new tokens.
void ChatMatchesCold(std::shared_ptr<Model> m, int turns, int user_len, int max_tokens,
                     double* saved_out, double* hits_out = nullptr) {
  Server cold(m, 0), warm(m, size_t{1} << 30);
  std::vector<int32_t> history = Seq(5, 40);
  for (int t = 0; t < turns; ++t) {
    SCOPED_TRACE(::testing::Message() << "turn " << t << ", prompt " << history.size() + user_len);
    history = Cat(history, Seq(user_len, 50 + t));
    Out c = cold.Run(history, max_tokens, 100 + t);
    Out w = warm.Run(history, max_tokens, 100 + t);
    ExpectSame(c, w);
    // The same prompt again: served from the end-of-prompt checkpoint (with its logits
    // when that one may serve this length).
    if (t == 1) ExpectSame(cold.Run(history, 3, 7), warm.Run(history, 3, 7));
    history = Cat(history, c.tokens);
  }
  EXPECT_GT(warm.metrics.prefix_cache_hits->Value(), 0);
  EXPECT_EQ(cold.metrics.prefix_cache_hits->Value(), 0);
  EXPECT_LT(warm.metrics.prompt_tokens->Value(), cold.metrics.prompt_tokens->Value());
  EXPECT_EQ(warm.metrics.prompt_tokens->Value() + warm.metrics.prefix_cache_saved_tokens->Value(),
            cold.metrics.prompt_tokens->Value());
  *saved_out = warm.metrics.prefix_cache_saved_tokens->Value();
  if (hits_out) *hits_out = warm.metrics.prefix_cache_hits->Value();
}

TEST(PrefixCacheExact, ChatBelowTheThresholdHitsEveryTurnAndMatchesCold) {
  // Threshold 64 * 4 = 256, no compression: the whole chat (< 200 tokens) is split-invariant.
  auto m = SmallModel(64, 4, 0);
  double saved = 0;
  ChatMatchesCold(m, 6, 9, 12, &saved);
  // Every turn from the second reuses at least the previous prompt.
  EXPECT_GT(saved, 5 * 14);
}

TEST(PrefixCacheExact, ChatPastTheThresholdAndCompressionMatchesCold) {
  // Threshold 16 * 2 = 32, compression above 90 rows: chunk-local prefill, sparse decode
  // and compression all run; only chunk-aligned prompt checkpoints may serve.
  auto m = SmallModel(16, 2, 90);
  double saved = 0;
  ChatMatchesCold(m, 7, 11, 10, &saved);
  EXPECT_GT(saved, 0);
}

TEST(PrefixCacheExact, AChatGrowingPastTheThresholdKeepsHitting) {
  // Threshold 64: turns of ~21 tokens cross it at the third turn. Hits off the chunk grid
  // first feed up to it, so every prompt leaves a grid checkpoint that still serves the
  // first prompt past the threshold.
  auto m = SmallModel(32, 2, 0);
  double saved = 0, hits = 0;
  ChatMatchesCold(m, 7, 11, 10, &saved, &hits);
  EXPECT_EQ(hits, 7);  // turns 2-7, and the repeated prompt of turn 2
}

TEST(PrefixCacheExact, ConcurrentRequestsSharingAPrefixMatchCold) {
  auto m = SmallModel(64, 4, 0);
  Server cold(m, 0), warm(m, size_t{1} << 30);
  const auto sys = Seq(40, 60);
  warm.Run(sys, 1, 1);  // leaves a checkpoint of the shared prefix
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (int i = 0; i < 4; ++i) ss.push_back(warm.Submit(Cat(sys, Seq(5 + i, 70 + i)), 6, 0, 0.0f));
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    ExpectSame(cold.Run(Cat(sys, Seq(5 + i, 70 + i)), 6, 0, 0.0f), Collect(ss[i]));
  }
  EXPECT_GE(warm.metrics.prefix_cache_hits->Value(), 4);
}

TEST(PrefixCacheExact, ASharedPrefixPastTheThresholdGetsABranchCheckpoint) {
  // Threshold 32: the 60-token shared beginning is past it; chunks of 8.
  auto m = SmallModel(16, 2, 0);
  Server cold(m, 0), warm(m, size_t{1} << 30);
  const auto sys = Seq(60, 80);
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    const auto p = Cat(sys, Seq(9 + i, 90 + i));
    ExpectSame(cold.Run(p, 5, i), warm.Run(p, 5, i));
  }
  // The second request branches off the first at 60: a checkpoint at 56 (a chunk
  // boundary) serves the third and the fourth.
  EXPECT_GE(warm.metrics.prefix_cache_hits->Value(), 2);
  EXPECT_GE(warm.metrics.prefix_cache_saved_tokens->Value(), 2 * 56);
}

TEST(PrefixCacheExact, SplitInvariantLength) {
  auto be = MakeCpuBackend(SmallModel(16, 2, 90));
  EXPECT_EQ(SplitInvariantTokens(*be), 32);
  auto be2 = MakeCpuBackend(SmallModel(64, 4, 200));
  EXPECT_EQ(SplitInvariantTokens(*be2), 200);
  auto m = SmallModel(16, 2, 0);
  m->attn.prefill_mode = AttnPrefillMode::kFull;
  m->attn.decode_mode = AttnDecodeMode::kFull;
  EXPECT_EQ(SplitInvariantTokens(*MakeCpuBackend(m)), LLONG_MAX);
  // Any backend: the model's limit if it says it is split-invariant (the CUDA backend in
  // its batch-invariant mode), else 0 (only the aligned rule serves).
  ListBackend other;
  other.SetModel(SmallModel(16, 2, 90));
  EXPECT_EQ(SplitInvariantTokens(other), 0);
  other.invariant = true;
  EXPECT_EQ(SplitInvariantTokens(other), 32);
  EXPECT_TRUE(be->SplitInvariant());
}

// ---- the chat template ----------------------------------------------------------------

TEST(PrefixCacheChat, TurnNRendersAsAPrefixOfTurnNPlusOne) {
  std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi there\n\n\nfriend"}};
  std::vector<std::string> answers = {" Hello! How can I help?", "Sure:\nline two", ""};
  std::string prev = *BuildChatPrompt(msgs);
  for (size_t i = 0; i < answers.size(); ++i) {
    msgs.push_back({"assistant", answers[i]});
    msgs.push_back({"user", "question " + std::to_string(i)});
    std::string next = *BuildChatPrompt(msgs);
    ASSERT_EQ(next.compare(0, prev.size(), prev), 0) << prev << "\n---\n" << next;
    prev = next;
  }
}

}  // namespace
}  // namespace rwkvx
