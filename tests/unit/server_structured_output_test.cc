// Structured output and the other output controls through the Service and the scheduler
// (fake backend, byte tokenizer): grammars compiled on the caller's thread, bad schemas
// and grammars refused with the reason, constrained outputs that match their grammar and
// finish with kStop, constrained rows sampled in the backend with the grammar's mask (the
// same tokens as on the host), logit_bias and min_tokens on both sampling paths.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/testing/stream_collector.h"
#include "tests/unit/server_service_env.h"

namespace rwkvx {
namespace {

using testing::ServiceEnv;

// A Service whose scheduler samples in the backend where the fake backend can.
SchedulerOptions DeviceOpts() {
  SchedulerOptions o;
  o.device_sampling = true;
  return o;
}

GenerateParams Sampled(int64_t max_tokens, uint64_t seed) {
  GenerateParams p;
  p.prompt.text = "hello";
  p.max_tokens = max_tokens;
  p.temperature = 1.0;
  p.seed = seed;
  return p;
}

testing::Collected Generated(ServiceEnv& e, const GenerateParams& p) {
  auto s = e.svc->Generate(p);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return {};
  testing::StreamCollector c((*s)[0]);
  return c.WaitFinal();
}

TEST(StructuredOutputTest, BadSchemaAndGrammarNameTheProblem) {
  ServiceEnv e;
  GenerateParams p = Sampled(8, 1);
  p.output_format = {OutputFormat::Kind::kJsonSchema, R"({"type": "object", "patternProperties": {"a": {}}})",
                     "response_format.json_schema.schema"};
  auto r = e.svc->Generate(p);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("response_format.json_schema.schema: "), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("patternProperties"), std::string::npos) << r.status();

  p.output_format = {OutputFormat::Kind::kGrammar, "root ::= undefined-rule", "grammar"};
  r = e.svc->Generate(p);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("grammar: "), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("undefined-rule"), std::string::npos) << r.status();
}

TEST(StructuredOutputTest, JsonSchemaOutputsValidateAndStop) {
  std::vector<std::string> texts[2];
  for (bool device : {false, true}) {
    ServiceEnv e(DeviceOpts());
    e.backend->device_sampling = device;
    const int device_before = e.backend->device_sampled.load();
    for (uint64_t seed = 1; seed <= 5; ++seed) {
      GenerateParams p = Sampled(100, seed);
      p.output_format = {OutputFormat::Kind::kJsonSchema,
                         R"({"type":"object","properties":{"ok":{"type":"boolean"},"n":{"enum":[1,2,3]}},"required":["ok","n"]})",
                         "schema"};
      testing::Collected c = Generated(e, p);
      ASSERT_TRUE(c.finished);
      EXPECT_EQ(c.final_event.finish, FinishReason::kStop) << c.text;
      auto j = nlohmann::json::parse(c.text, nullptr, false);
      ASSERT_TRUE(j.is_object()) << c.text;
      EXPECT_TRUE(j["ok"].is_boolean()) << c.text;
      EXPECT_TRUE(j["n"] == 1 || j["n"] == 2 || j["n"] == 3) << c.text;
      texts[device].push_back(c.text);
    }
    // Constrained rows go to the device sampler with their mask (DeviceSampling::allowed)
    // where the backend samples; each output's first token comes from the prompt's row.
    if (device)
      EXPECT_GT(e.backend->device_sampled.load(), device_before + 5 * 5);
    else
      EXPECT_EQ(e.backend->device_sampled.load(), device_before);
  }
  EXPECT_EQ(texts[0], texts[1]);  // the same draws and the same mask on both paths
}

TEST(StructuredOutputTest, GrammarWithEndOfTextChoice) {
  ServiceEnv e;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    GenerateParams p = Sampled(50, seed);
    p.output_format = {OutputFormat::Kind::kGrammar, R"(root ::= "a"+)", "grammar"};
    testing::Collected c = Generated(e, p);
    ASSERT_TRUE(c.finished);
    ASSERT_FALSE(c.text.empty());
    EXPECT_EQ(c.text.find_first_not_of('a'), std::string::npos) << c.text;
    // Ends at end of text (stop) or at max_tokens (length), never with other bytes.
    EXPECT_TRUE(c.final_event.finish == FinishReason::kStop || c.final_event.finish == FinishReason::kLength);
  }
}

TEST(StructuredOutputTest, LogitBiasForcesATokenOnBothPaths) {
  for (bool device : {false, true}) {
    ServiceEnv e(DeviceOpts());
    e.backend->device_sampling = device;
    GenerateParams p = Sampled(6, 3);
    p.ignore_eos = true;
    p.logit_bias = {{'Z' + 1, 100.0}};
    testing::Collected c = Generated(e, p);
    EXPECT_EQ(c.text, "ZZZZZZ") << "device " << device;
    EXPECT_EQ(e.backend->device_sampled.load() > 0, device);  // the bias reached the device sampler
    p.logit_bias = {{'Z' + 1, 101.0}};
    EXPECT_EQ(e.svc->Generate(p).status().code(), absl::StatusCode::kInvalidArgument);
    p.logit_bias = {{300, 1.0}};
    EXPECT_EQ(e.svc->Generate(p).status().code(), absl::StatusCode::kInvalidArgument);
    p.logit_bias = {{5, 1.0}, {5, 2.0}};
    EXPECT_EQ(e.svc->Generate(p).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(StructuredOutputTest, MinTokensHoldsBackStopTokens) {
  for (bool device : {false, true}) {
    ServiceEnv e(DeviceOpts());
    e.backend->device_sampling = device;
    // 'Q' is pushed to the top; as a stop token it would end the output at once.
    GenerateParams p = Sampled(20, 4);
    p.logit_bias = {{'Q' + 1, 100.0}};
    p.stop_token_ids = {'Q' + 1};
    testing::Collected first = Generated(e, p);
    EXPECT_EQ(first.final_event.completion_tokens, 1);
    EXPECT_EQ(first.final_event.finish, FinishReason::kStop);
    p.min_tokens = 5;
    testing::Collected held = Generated(e, p);
    EXPECT_EQ(held.final_event.completion_tokens, 6) << "device " << device;  // 5 others, then Q
    EXPECT_EQ(held.final_event.finish, FinishReason::kStop);
    EXPECT_EQ(held.text.find('Q'), std::string::npos);
    p.min_tokens = 21;
    EXPECT_EQ(e.svc->Generate(p).status().code(), absl::StatusCode::kInvalidArgument);
    p.min_tokens = 2;
    p.output_format = {OutputFormat::Kind::kJsonObject, "", "response_format"};
    EXPECT_EQ(e.svc->Generate(p).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace rwkvx
