// CPU backend: copy-on-write ForkSession over the paged KV store (engine/cpu/kv_pages.h),
// memory accounting of shared pages, and split invariance (one prefill call, several, or
// token-by-token decode give bit-identical logits below the full-attention threshold).
#include <gtest/gtest.h>

#include <vector>

#include "engine/backend.h"
#include "engine/cpu/kv_pages.h"
#include "engine/model.h"
#include "engine/snapshot.h"
#include "tests/unit/small_model.h"

namespace rwkvx {
namespace {

using Calls = std::vector<std::vector<int32_t>>;

// Small sparse parameters so that every path runs within a few hundred tokens: chunk 16,
// top-2 (full attention up to 32 rows, then sparse decode and chunk-local prefill),
// compression above 150 rows down to 100 (window 20). Pages are 64 rows.
std::shared_ptr<Model> ForkModel() {
  auto m = testing::SmallSparseModel(128, 2, 2, 11, "fork-test");
  m->attn.max_kv_cache_size = 150;
  m->attn.min_kv_cache_size = 100;
  m->attn.kv_cache_window_size = 20;
  return m;
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (seed * 131 + i * 17 + i * i * 7) % 300;
  return t;
}

// `n` calls of one token each.
Calls Decodes(int n, int seed) {
  Calls c;
  for (int32_t t : Tokens(n, seed)) c.push_back({t});
  return c;
}

Calls Concat(Calls a, const Calls& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs `calls` on session `s`; returns the logits of every call, in order.
std::vector<std::vector<float>> RunCalls(Backend& be, SessionId s, const Calls& calls) {
  std::vector<std::vector<float>> out;
  for (const auto& c : calls) {
    std::vector<float> l;
    EXPECT_TRUE(be.Step({{s, c, true}}, &l).ok());
    out.push_back(std::move(l));
  }
  return out;
}

// The logits a fresh session gives for `calls` (its own backend: nothing shared).
std::vector<std::vector<float>> Fresh(const std::shared_ptr<Model>& m, const Calls& calls) {
  auto be = MakeCpuBackend(m);
  return RunCalls(*be, *be->CreateSession(), calls);
}

size_t PageBytes(const Model& m) { return 2 * cpu::kKvPageRows * m.shape.n_embd * sizeof(float); }

// Prefixes covering: nothing, full attention mid-page, sparse decode past the threshold
// with several pages, exactly one full page per block, chunk-local prefill, compression.
std::vector<Calls> Prefixes() {
  return {
      {},
      {Tokens(10, 1)},
      Concat({Tokens(30, 2)}, Decodes(45, 3)),
      Concat({Tokens(20, 4)}, Decodes(44, 5)),
      {Tokens(25, 6), Tokens(40, 7), Tokens(90, 8)},  // 155 rows: compresses on the next call
      Concat({Tokens(140, 9)}, Decodes(20, 10)),      // compressed during the decodes
  };
}

TEST(CpuFork, ParentAndChildMatchFreshSessions) {
  auto m = ForkModel();
  const Calls cont_parent = Concat(Concat(Decodes(5, 20), {Tokens(40, 21)}), Decodes(70, 22));
  const Calls cont_child = Concat(Concat({Tokens(3, 23)}, Decodes(30, 24)), {Tokens(120, 25), {7}});
  int k = 0;
  for (const Calls& prefix : Prefixes()) {
    SCOPED_TRACE(::testing::Message() << "prefix " << k++);
    auto be = MakeCpuBackend(m);
    const SessionId parent = *be->CreateSession();
    RunCalls(*be, parent, prefix);
    auto child = be->ForkSession(parent);
    ASSERT_TRUE(child.ok()) << child.status();
    EXPECT_EQ(be->SessionKvTokens(*child), be->SessionKvTokens(parent));
    EXPECT_EQ(SerializeSnapshot(*m, *be->ExportSession(*child)), SerializeSnapshot(*m, *be->ExportSession(parent)));
    // Interleave the two so that each writes pages the other still holds.
    std::vector<std::vector<float>> lp, lc;
    for (size_t i = 0; i < std::max(cont_parent.size(), cont_child.size()); ++i) {
      if (i < cont_child.size()) lc.push_back(RunCalls(*be, *child, {cont_child[i]})[0]);
      if (i < cont_parent.size()) lp.push_back(RunCalls(*be, parent, {cont_parent[i]})[0]);
    }
    const auto fp = Fresh(m, Concat(prefix, cont_parent));
    const auto fc = Fresh(m, Concat(prefix, cont_child));
    for (size_t i = 0; i < lp.size(); ++i) ASSERT_EQ(lp[i], fp[prefix.size() + i]) << "parent call " << i;
    for (size_t i = 0; i < lc.size(); ++i) ASSERT_EQ(lc[i], fc[prefix.size() + i]) << "child call " << i;
  }
}

TEST(CpuFork, ParentAndChildInOneBatchedStep) {
  auto m = ForkModel();
  auto be = MakeCpuBackend(m);
  const Calls prefix = Concat({Tokens(50, 30)}, Decodes(10, 31));
  const SessionId parent = *be->CreateSession();
  RunCalls(*be, parent, prefix);
  const SessionId child = *be->ForkSession(parent);
  const SessionId grandchild = *be->ForkSession(child);
  const Calls a = Decodes(20, 32), b = Decodes(20, 33), c = Concat({Tokens(9, 34)}, Decodes(19, 35));
  std::vector<std::vector<float>> la, lb, lc;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<float> l;
    ASSERT_TRUE(be->Step({{parent, a[i], true}, {child, b[i], true}, {grandchild, c[i], true}}, &l).ok());
    const size_t V = m->shape.vocab;
    la.emplace_back(l.begin(), l.begin() + V);
    lb.emplace_back(l.begin() + V, l.begin() + 2 * V);
    lc.emplace_back(l.begin() + 2 * V, l.end());
  }
  const auto fa = Fresh(m, Concat(prefix, a)), fb = Fresh(m, Concat(prefix, b)), fc = Fresh(m, Concat(prefix, c));
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(la[i], fa[prefix.size() + i]) << i;
    ASSERT_EQ(lb[i], fb[prefix.size() + i]) << i;
    ASSERT_EQ(lc[i], fc[prefix.size() + i]) << i;
  }
}

TEST(CpuFork, FreeingTheParentLeavesTheChild) {
  auto m = ForkModel();
  auto be = MakeCpuBackend(m);
  const Calls prefix = {Tokens(70, 40), Tokens(30, 41)};
  const SessionId parent = *be->CreateSession();
  RunCalls(*be, parent, prefix);
  const SessionId child = *be->ForkSession(parent);
  ASSERT_TRUE(be->FreeSession(parent).ok());
  std::vector<float> l;
  EXPECT_EQ(be->Step({{parent, {1}, true}}, &l).code(), absl::StatusCode::kNotFound);
  const Calls cont = Concat(Decodes(30, 42), {Tokens(40, 43)});
  const auto lc = RunCalls(*be, child, cont);
  const auto f = Fresh(m, Concat(prefix, cont));
  for (size_t i = 0; i < cont.size(); ++i) ASSERT_EQ(lc[i], f[prefix.size() + i]) << i;
  ASSERT_TRUE(be->FreeSession(child).ok());
  EXPECT_EQ(be->Memory().used_bytes, 0u);  // the last holder freed every page
}

TEST(CpuFork, SharedPagesAreCountedOnce) {
  auto m = ForkModel();
  auto be = MakeCpuBackend(m);
  const size_t page = PageBytes(*m);
  const SessionId parent = *be->CreateSession();
  // 130 rows per sparse block: three pages each, the last partly filled; one decode so the
  // chunk sums exist before the fork.
  RunCalls(*be, parent, {Tokens(129, 50), {5}});
  ASSERT_EQ(be->SessionKvTokens(parent), 2u * 130);
  const size_t kv = 2 * 3 * page;
  const size_t parent_bytes = be->SessionBytes(parent);
  const size_t fixed = parent_bytes - kv;  // RWKV state, shift states, chunk sums
  ASSERT_GT(parent_bytes, kv);
  EXPECT_EQ(be->Memory().used_bytes, parent_bytes);

  const size_t u0 = be->Memory().used_bytes;
  const SessionId child = *be->ForkSession(parent);
  const size_t u1 = be->Memory().used_bytes;
  EXPECT_EQ(u1 - u0, fixed);                            // no KV page was copied
  EXPECT_EQ(be->SessionBytes(child), parent_bytes);     // each session's own view holds all its pages

  // The child's first write copies its shared, partly filled last page of each block.
  RunCalls(*be, child, {{9}});
  const size_t u2 = be->Memory().used_bytes;
  EXPECT_EQ(u2 - u1, 2 * page);
  EXPECT_EQ(be->SessionBytes(child), parent_bytes);
  // The parent now owns its last pages alone and writes them in place.
  RunCalls(*be, parent, {{8}});
  EXPECT_EQ(be->Memory().used_bytes, u2);

  // Freeing the parent frees only what the child does not hold: its fixed part and its
  // two last pages.
  ASSERT_TRUE(be->FreeSession(parent).ok());
  EXPECT_EQ(be->Memory().used_bytes, be->SessionBytes(child));
  EXPECT_EQ(be->Memory().used_bytes, u2 - fixed - 2 * page);
}

TEST(CpuFork, BudgetSeesSharedPagesOnce) {
  auto m = ForkModel();
  const size_t page = PageBytes(*m);
  const Calls prefix = {Tokens(129, 60)};
  size_t used = 0, fixed = 0;
  {
    auto be = MakeCpuBackend(m);
    const SessionId s = *be->CreateSession();
    RunCalls(*be, s, prefix);
    used = be->Memory().used_bytes;
    fixed = be->SessionBytes(s) - 2 * 3 * page;
  }
  // Room for the fixed part and one page per block, far less than a whole copy.
  CpuBackendOptions opts;
  opts.memory_budget_bytes = used + fixed + 2 * page;
  ASSERT_LT(opts.memory_budget_bytes, 2 * used);
  auto be = MakeCpuBackend(m, opts);
  const SessionId s = *be->CreateSession();
  RunCalls(*be, s, prefix);
  ASSERT_EQ(be->Memory().used_bytes, used);
  auto child = be->ForkSession(s);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(be->ForkSession(s).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(be->ForkSession(12345).status().code(), absl::StatusCode::kNotFound);
}

TEST(CpuFork, CompressionInTheChildLeavesTheParent) {
  auto m = ForkModel();
  auto be = MakeCpuBackend(m);
  const SessionId parent = *be->CreateSession();
  RunCalls(*be, parent, {Tokens(148, 70)});
  const std::string before = SerializeSnapshot(*m, *be->ExportSession(parent));
  const SessionId child = *be->ForkSession(parent);
  const size_t rows = be->SessionKvTokens(child);
  RunCalls(*be, child, Decodes(6, 71));  // passes 150 rows: compresses to 100 + new
  ASSERT_LT(be->SessionKvTokens(child), rows);
  EXPECT_EQ(SerializeSnapshot(*m, *be->ExportSession(parent)), before);
  const Calls cont = Decodes(10, 72);
  const auto lp = RunCalls(*be, parent, cont);
  const auto f = Fresh(m, Concat({Tokens(148, 70)}, cont));
  for (size_t i = 0; i < cont.size(); ++i) ASSERT_EQ(lp[i], f[1 + i]) << i;
}

TEST(CpuFork, ForkOfAnImportedSessionMatches) {
  auto m = ForkModel();
  auto be = MakeCpuBackend(m);
  const SessionId s = *be->CreateSession();
  const Calls prefix = {Tokens(90, 80)};
  RunCalls(*be, s, prefix);
  auto st = be->ExportSession(s);
  ASSERT_TRUE(st.ok());
  const SessionId imported = *be->ImportSession(*st);
  const SessionId child = *be->ForkSession(imported);
  const Calls cont = Decodes(12, 81);
  const auto l1 = RunCalls(*be, child, cont), l2 = RunCalls(*be, s, cont);
  for (size_t i = 0; i < cont.size(); ++i) ASSERT_EQ(l1[i], l2[i]) << i;
}

// Below the full-attention threshold, how a context is cut into calls does not change the
// logits: the prefix cache relies on this to resume a prompt at any token boundary.
TEST(CpuSplitInvariance, PrefillCallsAndDecodeAgree) {
  auto m = ForkModel();
  m->attn.chunk_size = 64;  // threshold 128
  m->attn.max_kv_cache_size = 0;
  const int n = 120;
  const std::vector<int32_t> toks = Tokens(n, 90);
  auto cut = [&](const std::vector<int>& sizes) {
    Calls c;
    int p = 0;
    for (int s : sizes) {
      c.push_back(std::vector<int32_t>(toks.begin() + p, toks.begin() + p + s));
      p += s;
    }
    EXPECT_EQ(p, n);
    return c;
  };
  std::vector<int> ones(n, 1);
  const auto one = Fresh(m, cut({n}));
  const auto several = Fresh(m, cut({7, 1, 33, 2, 64, 13}));
  const auto decode = Fresh(m, cut(ones));
  const auto mixed = Fresh(m, cut({1, 1, 5, 1, 100, 1, 1, 10}));
  EXPECT_EQ(one.back(), several.back());
  EXPECT_EQ(one.back(), decode.back());
  EXPECT_EQ(one.back(), mixed.back());
  // Every intermediate boundary too: after token 41 (several: 7 + 1 + 33) and 108.
  EXPECT_EQ(several[2], decode[40]);
  EXPECT_EQ(several[4], decode[106]);
  EXPECT_EQ(mixed[4], decode[107]);
}

}  // namespace
}  // namespace rwkvx
