// CUDA backend: ways of running the same step that must give the same bits (CUDA graphs
// against eager launches, programmatic dependent launch against plain launches, the fused
// decode kernel against its three kernels, the decode attention's own appends and chunk
// selection against kv_append and chunk_select) and padded decode buckets. Split from
// cuda_backend_test.cc (parity with the CPU). Every test skips where no GPU is usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/model.h"

#include "tests/cuda/cuda_parity_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace rwkvx {
namespace {

// Decode steps replayed from CUDA graphs give the same logits, bit for bit, as the same
// steps run eagerly (CudaBackendOptions::cuda_graphs = false): the same kernels with the
// same arguments. One and two sessions (steps of <= 4 rows take the GEMV path, no cuBLAS
// heuristics), sparse decode across a growing chunk count (new graph keys on the way).
TEST(CudaBackend, DecodeGraphsEqualEagerSteps) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(47);
  GraphsAndEager both(m);
  ASSERT_TRUE(both.ok());
  Backend* graphs = both.graphs.get();
  Backend* eager = both.eager.get();
  const SessionId g1 = *graphs->CreateSession(), g2 = *graphs->CreateSession();
  const SessionId e1 = *eager->CreateSession(), e2 = *eager->CreateSession();
  std::vector<float> lg, le;
  ASSERT_TRUE(graphs->Step({{g1, Tokens(60, 1024, 21), false}, {g2, Tokens(250, 1024, 22), false}}, &lg).ok());
  ASSERT_TRUE(eager->Step({{e1, Tokens(60, 1024, 21), false}, {e2, Tokens(250, 1024, 22), false}}, &le).ok());
  int32_t t1 = 1, t2 = 2;
  for (int i = 0; i < 40; ++i) {
    // Alternate one-session and two-session steps so both graph shapes replay.
    if (i % 3 == 0) {
      ASSERT_TRUE(graphs->Step({{g1, {t1}, true}}, &lg).ok());
      ASSERT_TRUE(eager->Step({{e1, {t1}, true}}, &le).ok());
      ASSERT_EQ(lg, le) << "one-session step " << i;
      t1 = Argmax(lg.data(), 1024);
    } else {
      ASSERT_TRUE(graphs->Step({{g1, {t1}, true}, {g2, {t2}, true}}, &lg).ok());
      ASSERT_TRUE(eager->Step({{e1, {t1}, true}, {e2, {t2}, true}}, &le).ok());
      ASSERT_EQ(lg, le) << "two-session step " << i;
      t1 = Argmax(lg.data(), 1024);
      t2 = Argmax(lg.data() + 1024, 1024);
    }
  }
  EXPECT_EQ(graphs->SessionKvTokens(g2), eager->SessionKvTokens(e2));
}

// Programmatic dependent launch (CudaBackendOptions::pdl) lets a kernel start while the
// previous one finishes; every kernel waits for it before touching memory, so the results
// are the same bits as with ordinary launches. Prefill, then decode steps of 2 and of 4
// sessions (the backend uses PDL for steps of up to 4), graphs and eager. Also with the
// GEMV's weight prefetch before its wait (CudaBackendOptions::gemv_prefetch) and the decode
// kernels' other reads before it (CudaBackendOptions::early_reads): the same bits.
TEST(CudaBackend, PdlStepsEqualPlainSteps) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(53);
  auto run = [&](bool pdl, bool graphs, bool prefetch = false, int early = -1) {
    CudaBackendOptions o = GpuOptions();
    o.pdl = pdl;
    o.cuda_graphs = graphs;
    o.gemv_prefetch = prefetch ? 1 : 0;
    o.early_reads = early;
    auto b = Gpu(m, o);  // each step sets the process-wide PDL switch from its backend
    std::vector<float> out, l;
    if (!b) return out;
    std::vector<SessionId> ids;
    std::vector<StepInput> pre;
    for (int i = 0; i < 4; ++i) {
      ids.push_back(*b->CreateSession());
      pre.push_back({ids.back(), Tokens(40 + 13 * i, 1024, 300 + i), false});
    }
    EXPECT_TRUE(b->Step(pre, &l).ok());
    std::vector<int32_t> tok(4, 1);
    for (int s = 0; s < 12; ++s) {
      const int n = s % 2 ? 4 : 2;
      std::vector<StepInput> in;
      for (int i = 0; i < n; ++i) in.push_back({ids[i], {tok[i]}, true});
      EXPECT_TRUE(b->Step(in, &l).ok());
      for (int i = 0; i < n; ++i) tok[i] = Argmax(l.data() + static_cast<size_t>(i) * 1024, 1024);
      out.insert(out.end(), l.begin(), l.end());
    }
    return out;
  };
  for (bool graphs : {true, false}) {
    const std::vector<float> with = run(true, graphs), without = run(false, graphs);
    ASSERT_FALSE(with.empty());
    EXPECT_TRUE(with == without) << (graphs ? "graphs" : "eager");
    std::printf("[pdl] %s: %zu logits, %s\n", graphs ? "graphs" : "eager", with.size(),
                with == without ? "identical" : "DIFFERENT");
    const std::vector<float> prefetched = run(true, graphs, true);
    EXPECT_TRUE(prefetched == without) << (graphs ? "graphs" : "eager") << ", gemv_prefetch";
    // The decode kernels' reads before the wait (CudaBackendOptions::early_reads), forced
    // off and on (the default, -1, is on for this model's 256 channels): the same bits.
    for (int early : {0, 1})
      EXPECT_TRUE(run(true, graphs, true, early) == without) << (graphs ? "graphs" : "eager") << ", early_reads " << early;
  }
}

// Pure decode steps run each RWKV block's prep, recurrence and output norm as one kernel
// (CudaBackendOptions::fused_decode, kernels/wkv7.cuh Wkv7DecodeKernel). It runs the same
// arithmetic as the three kernels, so logits are the same bits: decode steps of 1, 3 and
// 37 sessions (a padded bucket), graphs and eager, fp16 and bf16 weights; the prompts
// (prefill steps) and a mixed step go through the three kernels in both runs.
TEST(CudaBackend, FusedDecodeEqualsThreeKernels) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(59);
  auto run = [&](bool fused, bool graphs, bool bf16, bool prefetch = false, int wkv_rows = 1) {
    CudaBackendOptions o = GpuOptions();
    o.fused_decode = fused;
    o.decode_prefetch = prefetch;
    o.wkv_rows = wkv_rows;  // state rows a thread of the unfused wkv7 (the same bits)
    o.cuda_graphs = graphs;
    o.bf16 = bf16;
    auto b = Gpu(m, o);
    std::vector<float> out, l;
    if (!b) return out;
    std::vector<SessionId> ids;
    std::vector<StepInput> pre;
    for (int i = 0; i < 37; ++i) {
      ids.push_back(*b->CreateSession());
      pre.push_back({ids.back(), Tokens(5 + 7 * (i % 5), 1024, 400 + i), false});
    }
    EXPECT_TRUE(b->Step(pre, &l).ok());
    std::vector<int32_t> tok(37, 1);
    for (int st = 0; st < 9; ++st) {
      const int n = st % 3 == 0 ? 1 : st % 3 == 1 ? 3 : 37;
      std::vector<StepInput> in;
      for (int i = 0; i < n; ++i) in.push_back({ids[i], {tok[i]}, true});
      if (st == 4) in.push_back({ids[36], Tokens(6, 1024, 900), true});  // a mixed step: three decodes and a prompt chunk
      EXPECT_TRUE(b->Step(in, &l).ok());
      for (int i = 0; i < n; ++i) tok[i] = Argmax(l.data() + static_cast<size_t>(i) * 1024, 1024);
      out.insert(out.end(), l.begin(), l.end());
    }
    return out;
  };
  for (bool bf16 : {false, true})
    for (bool graphs : {true, false}) {
      const std::vector<float> fused = run(true, graphs, bf16), three = run(false, graphs, bf16);
      ASSERT_FALSE(fused.empty());
      EXPECT_TRUE(fused == three) << (graphs ? "graphs" : "eager") << (bf16 ? " bf16" : " fp16");
      std::printf("[fused decode] %s %s: %zu logits, %s\n", graphs ? "graphs" : "eager", bf16 ? "bf16" : "fp16",
                  fused.size(), fused == three ? "identical" : "DIFFERENT");
      // The kernel that loads the post's inputs early (CudaBackendOptions::decode_prefetch).
      EXPECT_TRUE(run(true, graphs, bf16, /*prefetch=*/true) == three) << "prefetch " << (graphs ? "graphs" : "eager");
      for (int rows : {2, 4})  // the three kernels with 2 and 4 state rows a thread in wkv7 (wkv_rows)
        EXPECT_TRUE(run(false, graphs, bf16, false, rows) == three) << rows << " rows " << (graphs ? "graphs" : "eager");
    }
}

// Pure decode steps append each attention layer's new key and value rows inside the
// decode attention kernel (CudaBackendOptions::fused_kv_append, AttnDecodeParams::append_k)
// rather than with kv_append first, and steps of few sessions choose the sparse chunks in
// that kernel too (fused_chunk_select, AttnDecodeParams::select) rather than in
// chunk_select: the same roundings, chunk sums, scores and selection, so the same logits bit
// for bit and the same cache. Sparse decode from the start (chunks of 16, top 2, the
// selection reading the chunk sums the appends build), decode steps of 1, 3 and 37 sessions
// (the selection in the kernel at 1 and 3 under the auto rule, at every size when forced), a
// mixed step (kv_append in every run), graphs and eager; and with compression (the cache
// compacted and its sums recomputed inside decode steps, then appended to).
TEST(CudaBackend, FusedAppendAndSelectEqualSeparateKernels) {
  SKIP_WITHOUT_GPU();
  struct Run {
    std::vector<float> logits;
    std::vector<SessionState> states;
  };
  auto run = [&](bool append, int select, bool graphs, int max_kv) {
    auto m = SparseTestModel(67, max_kv);
    if (max_kv > 0) {  // sessions past 64 rows compact to 40 (a window of 16), then grow again
      m->attn.kv_cache_window_size = 16;
      m->attn.min_kv_cache_size = 40;
    }
    CudaBackendOptions o = GpuOptions();
    o.fused_kv_append = append;
    o.fused_chunk_select = select;
    o.cuda_graphs = graphs;
    auto b = Gpu(m, o);
    Run r;
    if (!b) return r;
    std::vector<SessionId> ids;
    std::vector<StepInput> pre;
    std::vector<float> l;
    for (int i = 0; i < 37; ++i) {
      ids.push_back(*b->CreateSession());
      pre.push_back({ids.back(), Tokens(9 + 11 * (i % 7), 1024, 700 + i), false});
    }
    EXPECT_TRUE(b->Step(pre, &l).ok());
    std::vector<int32_t> tok(37, 1);
    for (int st = 0; st < 60; ++st) {
      const int n = st % 3 == 0 ? 1 : st % 3 == 1 ? 3 : 37;
      std::vector<StepInput> in;
      for (int i = 0; i < n; ++i) in.push_back({ids[i], {tok[i]}, true});
      if (st == 7) in.push_back({ids[36], Tokens(5, 1024, 901), true});  // mixed: kv_append for all
      EXPECT_TRUE(b->Step(in, &l).ok()) << "step " << st;
      for (int i = 0; i < n; ++i) tok[i] = Argmax(l.data() + static_cast<size_t>(i) * 1024, 1024);
      r.logits.insert(r.logits.end(), l.begin(), l.end());
    }
    for (int i : {0, 2, 36}) {
      auto st = b->ExportSession(ids[i]);
      EXPECT_TRUE(st.ok());
      if (st.ok()) r.states.push_back(*st);
    }
    return r;
  };
  for (int max_kv : {0, 64})
    for (bool graphs : {true, false}) {
      const Run plain = run(false, 0, graphs, max_kv);
      ASSERT_FALSE(plain.logits.empty());
      struct Variant {
        bool append;
        int select;
        const char* name;
      };
      for (const Variant& v : {Variant{true, 0, "append"}, Variant{false, -1, "select (auto)"},
                               Variant{true, -1, "both (the default)"}, Variant{true, 1, "both, select forced"}}) {
        const Run fused = run(v.append, v.select, graphs, max_kv);
        const char* what = graphs ? "graphs" : "eager";
        EXPECT_TRUE(fused.logits == plain.logits) << v.name << ", " << what << ", max_kv " << max_kv;
        ASSERT_EQ(fused.states.size(), plain.states.size());
        bool same_cache = true;
        for (size_t i = 0; i < fused.states.size(); ++i)
          for (size_t j = 0; j < fused.states[i].attn.size(); ++j) {
            const AttnLayerState &a = fused.states[i].attn[j], &c = plain.states[i].attn[j];
            EXPECT_GT(a.ct, 0);
            same_cache = same_cache && a.ct == c.ct && a.k == c.k && a.v == c.v;
          }
        EXPECT_TRUE(same_cache) << v.name << ", " << what << ", max_kv " << max_kv;
        std::printf("[fused append/select] %s, %s, max_kv %d: %zu logits %s, cache %s\n", v.name, what, max_kv,
                    fused.logits.size(), fused.logits == plain.logits ? "identical" : "DIFFERENT",
                    same_cache ? "identical" : "DIFFERENT");
      }
    }
}

// Decode steps replayed from graphs are padded to a bucket (37 and 39 sessions both run as
// 40 rows): an item's logits do not depend on how many real items share its bucket, and
// stay within the GEMM-order bound of the unpadded eager step.
TEST(CudaBackend, PaddedDecodeBuckets) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(61);
  GraphsAndEager both(m);
  ASSERT_TRUE(both.ok());
  Backend* graphs = both.graphs.get();
  Backend* eager = both.eager.get();
  std::vector<StepInput> pre_g, pre_e;
  for (int i = 0; i < 39; ++i) {
    pre_g.push_back({*graphs->CreateSession(), Tokens(30, 1024, 100 + i), false});
    pre_e.push_back({*eager->CreateSession(), Tokens(30, 1024, 100 + i), false});
  }
  std::vector<float> l;
  ASSERT_TRUE(graphs->Step(pre_g, &l).ok());
  ASSERT_TRUE(eager->Step(pre_e, &l).ok());
  std::vector<SessionId> forks;
  for (const StepInput& in : pre_g) forks.push_back(*graphs->ForkSession(in.session));
  for (int s = 0; s < 3; ++s) {
    std::vector<StepInput> a, b, e;
    for (int i = 0; i < 39; ++i) {
      const int32_t t = 7 * i + s;
      if (i < 37) a.push_back({pre_g[i].session, {t}, true});
      if (i < 37) e.push_back({pre_e[i].session, {t}, true});
      b.push_back({forks[i], {t}, true});
    }
    std::vector<float> la, lb, le;
    ASSERT_TRUE(graphs->Step(a, &la).ok());
    ASSERT_TRUE(graphs->Step(b, &lb).ok());
    ASSERT_TRUE(eager->Step(e, &le).ok());
    ASSERT_EQ(la.size(), 37u * 1024);
    ASSERT_EQ(lb.size(), 39u * 1024);
    EXPECT_TRUE(std::equal(la.begin(), la.end(), lb.begin())) << "step " << s;
    const Cmp c = Compare(la, le);
    EXPECT_LE(c.rel_l2, 2e-3) << "step " << s;
    std::printf("[padded decode step %d] 37 vs 39 items in bucket 40: %s; vs eager unpadded rel-L2 %.2e\n", s,
                std::equal(la.begin(), la.end(), lb.begin()) ? "identical" : "DIFFERENT", c.rel_l2);
  }
}

// Logits rows for the host go through the pinned staging buffer up to
// CudaBackendOptions::pinned_logits_bytes and straight into the caller's vector above it:
// the same rows either way (the copy moves bytes, it computes nothing). Three backends of
// one model: the default limit (16 MiB: every step here staged), 0 (never staged) and one
// row (one-row steps staged, larger ones not, so a backend switches between the two paths
// and regrows nothing wrongly); steps of 1, 3 and 5 rows, a prompt, and the same steps
// through BeginStep / EndStep (the vector is filled by EndStep) and with a sampled item.
TEST(CudaBackend, PinnedLogitsEqualPageableCopies) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(71);
  std::unique_ptr<Backend> b[3];
  const long long limits[3] = {-1, 0, 1024 * static_cast<long long>(sizeof(float))};
  for (int k = 0; k < 3; ++k) {
    CudaBackendOptions o = GpuOptions();
    o.pinned_logits_bytes = limits[k];
    b[k] = Gpu(m, o);
    ASSERT_NE(b[k], nullptr);
  }
  std::vector<SessionId> ids[3];
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 5; ++i) ids[k].push_back(*b[k]->CreateSession());
  DeviceSampling greedy;
  greedy.temperature = 0;
  std::vector<int32_t> tok{1, 2, 3, 4, 5};
  for (int st = 0; st < 24; ++st) {
    const int n = st == 0 ? 5 : st % 3 == 0 ? 1 : st % 3 == 1 ? 3 : 5;
    const bool overlap = st % 4 == 2, sample_one = st % 5 == 3;
    std::vector<float> l[3];
    std::vector<SampledToken> sm[3];
    for (int k = 0; k < 3; ++k) {
      std::vector<StepInput> in;
      for (int i = 0; i < n; ++i) {
        std::vector<int32_t> t = st == 0 ? Tokens(10 + 7 * i, 1024, 900 + i) : std::vector<int32_t>{tok[i]};
        in.push_back({ids[k][i], t, true, sample_one && i == 0 ? &greedy : nullptr});
      }
      if (overlap) {
        ASSERT_TRUE(b[k]->BeginStep(in, &l[k], &sm[k]).ok()) << "step " << st << " backend " << k;
        ASSERT_TRUE(b[k]->EndStep().ok()) << "step " << st << " backend " << k;
      } else {
        ASSERT_TRUE(b[k]->StepSampled(in, &l[k], &sm[k]).ok()) << "step " << st << " backend " << k;
      }
    }
    const size_t rows = n - (sample_one ? 1 : 0);
    for (int k = 0; k < 3; ++k) {
      ASSERT_EQ(l[k].size(), rows * 1024) << "step " << st << " backend " << k;
      ASSERT_EQ(sm[k].size(), sample_one ? 1u : 0u) << "step " << st << " backend " << k;
    }
    EXPECT_TRUE(SameBits(l[0], l[1])) << "step " << st;
    EXPECT_TRUE(SameBits(l[0], l[2])) << "step " << st;
    if (sample_one) {
      EXPECT_EQ(sm[0][0].token, sm[1][0].token);
      EXPECT_EQ(sm[0][0].token, sm[2][0].token);
    }
    for (int i = 0, r = 0; i < n; ++i) {
      if (sample_one && i == 0) {
        tok[i] = sm[0][0].token;
      } else {
        tok[i] = Argmax(l[0].data() + static_cast<size_t>(r) * 1024, 1024);
        ++r;
      }
    }
  }
}

// LayerNorm with its token-shift mixes as one launch in steps with prompts
// (CudaBackendOptions::fused_norm_shift) against the two launches: the same logits bit for
// bit over prompts of 1 to 300 tokens, a mixed step (decodes beside a prompt) and decode
// steps after them (which read the saved vectors the prompts left).
TEST(CudaBackend, FusedNormShiftEqualsTwoLaunches) {
  SKIP_WITHOUT_GPU();
  auto m = SparseTestModel(73);
  std::unique_ptr<Backend> b[2];
  for (int k = 0; k < 2; ++k) {
    CudaBackendOptions o = GpuOptions();
    o.fused_norm_shift = k == 0;
    b[k] = Gpu(m, o);
    ASSERT_NE(b[k], nullptr);
  }
  std::vector<SessionId> ids[2];
  const std::vector<int> plen{1, 17, 130, 300};
  std::vector<float> l[2];
  for (int k = 0; k < 2; ++k) {
    std::vector<StepInput> in;
    for (size_t i = 0; i < plen.size(); ++i) {
      ids[k].push_back(*b[k]->CreateSession());
      in.push_back({ids[k].back(), Tokens(plen[i], 1024, 300 + i), true});
    }
    ASSERT_TRUE(b[k]->Step(in, &l[k]).ok());
  }
  ASSERT_TRUE(SameBits(l[0], l[1])) << "prompts";
  std::vector<int32_t> tok(plen.size());
  for (size_t i = 0; i < plen.size(); ++i) tok[i] = Argmax(l[0].data() + i * 1024, 1024);
  for (int st = 0; st < 8; ++st) {
    for (int k = 0; k < 2; ++k) {
      std::vector<StepInput> in;
      for (size_t i = 0; i < plen.size(); ++i) {
        // Step 2: session 3 takes a 40-token prompt beside the others' decode tokens.
        std::vector<int32_t> t = st == 2 && i == 3 ? Tokens(40, 1024, 400) : std::vector<int32_t>{tok[i]};
        in.push_back({ids[k][i], t, true});
      }
      ASSERT_TRUE(b[k]->Step(in, &l[k]).ok()) << "step " << st;
    }
    ASSERT_TRUE(SameBits(l[0], l[1])) << "step " << st;
    for (size_t i = 0; i < plen.size(); ++i) tok[i] = Argmax(l[0].data() + i * 1024, 1024);
  }
}

}  // namespace
}  // namespace rwkvx
