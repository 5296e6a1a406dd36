// ApplyModelLimits (server/app/builders.h): the prompt cap and the HTTP body limit follow
// the model unless the flags set them. ResolveBatchTokens: --max-batch-tokens auto follows
// the backend.
#include <gtest/gtest.h>

#include "engine/model.h"
#include "server/app/builders.h"

namespace rwkvx {
namespace {

TEST(ServeLimits, PromptCapFollowsTheModel) {
  Model m;
  ServeFlags f;
  ApplyModelLimits(m, &f);  // no declared context: the default cap
  EXPECT_EQ(f.max_prompt_tokens, kDefaultPromptCap);
  EXPECT_EQ(f.max_body_bytes, 1LL << 20);  // 8 bytes a token of 131072

  m.attn.context_length = 1 << 20;
  ServeFlags g;
  ApplyModelLimits(m, &g);
  EXPECT_EQ(g.max_prompt_tokens, 1 << 20);
  EXPECT_EQ(g.max_body_bytes, 8LL << 20);

  m.attn.context_length = 1000;
  ServeFlags h;
  ApplyModelLimits(m, &h);
  EXPECT_EQ(h.max_prompt_tokens, 1000);
  EXPECT_EQ(h.max_body_bytes, 1LL << 20);  // never below 1 MiB

  ServeFlags explicit_flags;
  explicit_flags.max_prompt_tokens = 4096;
  explicit_flags.max_body_bytes = 5000;
  ApplyModelLimits(m, &explicit_flags);
  EXPECT_EQ(explicit_flags.max_prompt_tokens, 4096);
  EXPECT_EQ(explicit_flags.max_body_bytes, 5000);
}

TEST(ServeLimits, BatchTokensFollowTheBackend) {
  ServeFlags cpu;  // --backend auto that ended on the CPU
  EXPECT_EQ(BatchTokens(cpu), kBatchTokensCpu);  // unresolved: the CPU figure, never 0
  ResolveBatchTokens("cpu", &cpu);
  EXPECT_EQ(cpu.max_batch_tokens, kBatchTokensCpu);

  ServeFlags cuda;
  ResolveBatchTokens("cuda", &cuda);
  EXPECT_EQ(cuda.max_batch_tokens, kBatchTokensCuda);
  EXPECT_EQ(BatchTokens(cuda), kBatchTokensCuda);

  ServeFlags given;
  given.max_batch_tokens = 300;
  ResolveBatchTokens("cuda", &given);
  EXPECT_EQ(given.max_batch_tokens, 300);
  EXPECT_EQ(SchedulerOptionsFromFlags(given).max_batch_tokens, 300);

  ServeFlags bad;
  bad.max_batch_tokens = -1;
  EXPECT_FALSE(CheckServeFlags(bad).ok());
  ServeFlags bad_wkv;
  bad_wkv.cuda_wkv_chunked_min = -5;
  EXPECT_FALSE(CheckServeFlags(bad_wkv).ok());
  ServeFlags bad_blocks;
  bad_blocks.cuda_free_state_blocks = -2;
  EXPECT_FALSE(CheckServeFlags(bad_blocks).ok());
  EXPECT_TRUE(CheckServeFlags(ServeFlags{}).ok());  // the defaults (auto) pass
}

}  // namespace
}  // namespace rwkvx
