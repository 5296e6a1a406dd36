// Request parsing of the output-shaping fields (server/openai/openai_output_fields.h):
// response_format, grammar, logit_bias, min_tokens, stop_token_ids, echo, and the
// refusal of tool calling.
#include <string>

#include "gtest/gtest.h"
#include "server/openai/openai_request.h"

namespace rwkvx {
namespace {

absl::StatusOr<OpenAiRequest> Completion(const std::string& extra) {
  return ParseOpenAiRequest(ApiKind::kCompletion, R"({"prompt": "x")" + extra + "}", 64);
}
absl::StatusOr<OpenAiRequest> Chat(const std::string& extra) {
  return ParseOpenAiRequest(ApiKind::kChat,
                            R"({"messages": [{"role": "user", "content": "hi"}])" + extra + "}", 64);
}

// The status message of a refused body (fails the test if it was accepted).
std::string Refusal(const absl::StatusOr<OpenAiRequest>& r) {
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(OpenAiOutputFieldsTest, ResponseFormatKinds) {
  auto text = Chat(R"(, "response_format": {"type": "text"})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->params.output_format.kind, OutputFormat::Kind::kText);

  auto obj = Chat(R"(, "response_format": {"type": "json_object"})");
  ASSERT_TRUE(obj.ok()) << obj.status();
  EXPECT_EQ(obj->params.output_format.kind, OutputFormat::Kind::kJsonObject);

  auto schema = Chat(R"(, "response_format": {"type": "json_schema", "json_schema":
      {"name": "P", "strict": true, "schema": {"type": "object", "properties": {"b": {"type": "integer"}, "a": {}}}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(schema->params.output_format.kind, OutputFormat::Kind::kJsonSchema);
  EXPECT_EQ(schema->params.output_format.text,
            R"({"type":"object","properties":{"b":{"type":"integer"},"a":{}}})");  // the client's order
  EXPECT_EQ(schema->params.output_format.where, "response_format.json_schema.schema");

  auto gbnf = Completion(R"(, "grammar": "root ::= \"yes\" | \"no\"")");
  ASSERT_TRUE(gbnf.ok()) << gbnf.status();
  EXPECT_EQ(gbnf->params.output_format.kind, OutputFormat::Kind::kGrammar);
  EXPECT_EQ(gbnf->params.output_format.text, R"(root ::= "yes" | "no")");
}

TEST(OpenAiOutputFieldsTest, BadResponseFormats) {
  EXPECT_NE(Refusal(Chat(R"(, "response_format": "json")")).find("must be an object"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "response_format": {"type": "yaml"})")).find("\"yaml\""), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "response_format": {"type": "json_schema"})")).find("json_schema"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}})"))
                .find("schema' is required"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "response_format": {"type": "json_schema", "json_schema": {"schema": 3}})"))
                .find("must be a JSON schema"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "response_format": {"type": "json_object"}, "grammar": "root ::= \"a\"")"))
                .find("not both"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "grammar": 5)")).find("'grammar'"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "guided_json": 3)")).find("'guided_json' must be"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "guided_regex": "a", "guided_choice": ["b"])")).find("give one of"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "guided_choice": [1])")).find("'guided_choice'"), std::string::npos);
}

// vLLM's guided_* fields become the output formats they name (the regex and the choice
// compiled later, by the Service: kRegex).
TEST(OpenAiOutputFieldsTest, VllmGuidedFields) {
  auto j = Chat(R"(, "guided_json": {"type": "object", "properties": {"z": {}, "a": {}}})");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->params.output_format.kind, OutputFormat::Kind::kJsonSchema);
  EXPECT_LT(j->params.output_format.text.find("\"z\""), j->params.output_format.text.find("\"a\""));
  EXPECT_EQ(j->params.output_format.where, "guided_json");
  auto r = Completion(R"(, "guided_regex": "[0-9]+")");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->params.output_format.kind, OutputFormat::Kind::kRegex);
  EXPECT_EQ(r->params.output_format.text, "[0-9]+");
  auto c = Completion(R"j(, "guided_choice": ["a.b", "(c)"])j");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->params.output_format.kind, OutputFormat::Kind::kRegex);
  EXPECT_EQ(c->params.output_format.text, "(?:a\\.b)|(?:\\(c\\))");
  auto g = Completion(R"(, "guided_grammar": "root ::= \"x\"")");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->params.output_format.kind, OutputFormat::Kind::kGrammar);
}

TEST(OpenAiOutputFieldsTest, LogitBiasMinTokensStopTokenIds) {
  auto r = Completion(R"(, "logit_bias": {"65": 100, "66": -7.5}, "min_tokens": 4, "stop_token_ids": [10, 11])");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->params.logit_bias.size(), 2u);
  EXPECT_EQ(r->params.logit_bias[0].first, 65);
  EXPECT_DOUBLE_EQ(r->params.logit_bias[0].second, 100.0);
  EXPECT_EQ(r->params.logit_bias[1].first, 66);
  EXPECT_DOUBLE_EQ(r->params.logit_bias[1].second, -7.5);
  EXPECT_EQ(*r->params.min_tokens, 4);
  EXPECT_EQ(r->params.stop_token_ids, (std::vector<int64_t>{10, 11}));
  // Ranges are the Service's: parsing keeps them as given.
  auto big = Completion(R"(, "logit_bias": {"1": 1000}, "min_tokens": -3)");
  ASSERT_TRUE(big.ok());

  EXPECT_NE(Refusal(Completion(R"(, "logit_bias": {"x1": 2})")).find("'x1'"), std::string::npos);
  EXPECT_NE(Refusal(Completion(R"(, "logit_bias": {"1": "2"})")).find("numbers"), std::string::npos);
  EXPECT_NE(Refusal(Completion(R"(, "logit_bias": [1])")).find("object"), std::string::npos);
  EXPECT_NE(Refusal(Completion(R"(, "min_tokens": 1.5)")).find("min_tokens"), std::string::npos);
  EXPECT_NE(Refusal(Completion(R"(, "stop_token_ids": [1, "2"])")).find("stop_token_ids"), std::string::npos);
}

TEST(OpenAiOutputFieldsTest, Echo) {
  auto r = Completion(R"(, "echo": true)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->echo);
  EXPECT_NE(Refusal(Completion(R"(, "echo": true, "logprobs": 1)")).find("log-probabilities"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "echo": true)")).find("/v1/completions"), std::string::npos);
  auto off = Chat(R"(, "echo": false)");
  EXPECT_TRUE(off.ok());
}

TEST(OpenAiOutputFieldsTest, BadToolRequests) {
  const std::string tool = R"({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})";
  EXPECT_NE(Refusal(Chat(R"(, "tools": {})")).find("'tools' must be an array"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "tool_choice": "required")")).find("needs 'tools'"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "functions": [])")).find("functions"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "tools": [{"type": "retrieval"}])")).find("tools[0].type"), std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "tools": [{"type": "function", "function": {"name": "a b"}}])")).find("tools[0].function.name"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(R"(, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "patternProperties": {}}}}])"))
                .find("tools[0].function.parameters: "),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(", \"tools\": [" + tool + ", " + tool + "]")).find("used twice"), std::string::npos);
  EXPECT_NE(Refusal(Chat(", \"tools\": [" + tool + R"(], "tool_choice": {"type": "function", "function": {"name": "g"}})"))
                .find("'g'"),
            std::string::npos);
  EXPECT_NE(Refusal(Chat(", \"tools\": [" + tool + R"(], "response_format": {"type": "json_object"})")).find("tools"),
            std::string::npos);
  EXPECT_NE(Refusal(Completion(", \"tools\": [" + tool + "]")).find("/v1/chat/completions"), std::string::npos);
  // No tools asked for: as if none were given.
  auto none = Chat(", \"tools\": [" + tool + R"(], "tool_choice": "none")");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->tools);
  EXPECT_EQ(none->params.output_format.kind, OutputFormat::Kind::kText);
  EXPECT_TRUE(Chat(R"(, "tools": [])").ok());
}

TEST(OpenAiOutputFieldsTest, ToolMessagesInThePrompt) {
  auto r = Chat(R"(, "messages": [{"role": "user", "content": "weather?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\n  \"city\": \"Paris\"\n}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])");
  // "messages" given twice: nlohmann keeps the last one.
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->params.prompt.text,
            "User: weather?\n\nAssistant: <tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}"
            "</tool_call>\n\nTool: sunny\n\nAssistant:");
}

}  // namespace
}  // namespace rwkvx
