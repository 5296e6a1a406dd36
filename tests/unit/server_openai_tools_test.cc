// Tool calling (server/openai/openai_tools.h): the grammar each tool_choice gives (walked
// with the matcher on the byte vocabulary), the tools' system message, and
// ToolCallReader's split of a reply into text or calls, however the text is chunked.
#include <string>
#include <vector>

#include "engine/sampling/grammar/grammar.h"
#include "engine/sampling/grammar/matcher.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "server/openai/openai_request.h"
#include "server/openai/openai_tools.h"

namespace rwkvx {
namespace {

const char* kTools = R"("tools": [
  {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                  "required": ["city", "unit"], "$defs": {"unused": {"type": "integer"}}}}},
  {"type": "function", "function": {"name": "node", "parameters": {"$ref": "#/$defs/n",
   "$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}},
                   "required": ["v", "next"]}}}}}])";

OpenAiRequest Parse(const std::string& choice) {
  auto r = ParseOpenAiRequest(ApiKind::kChat,
                              std::string(R"({"messages": [{"role": "user", "content": "hi"}], )") + kTools + choice + "}", 64);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : OpenAiRequest{};
}

// Whether the request's grammar accepts `text` completely.
bool Matches(const OpenAiRequest& r, const std::string& text) {
  static auto tok = MakeByteTokenizer();
  static auto vocab = grammar::TokenVocabulary::Build(*tok);
  auto g = grammar::CompileGbnf(r.params.output_format.text);
  EXPECT_TRUE(g.ok()) << g.status() << "\n" << r.params.output_format.text;
  if (!g.ok()) return false;
  grammar::GrammarMatcher m(grammar::TokenGrammar::Bind(*g, vocab));
  return m.AcceptBytes(text) && m.IsComplete();
}

const std::string kWeather = R"(<tool_call>{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}</tool_call>)";
const std::string kNode = R"(<tool_call>{"name":"node","arguments":{"v":1,"next":{"v":2,"next":null}}}</tool_call>)";

TEST(OpenAiToolsTest, AutoAllowsTextOrOneCall) {
  OpenAiRequest r = Parse("");
  EXPECT_TRUE(r.tools);
  EXPECT_EQ(r.params.output_format.kind, OutputFormat::Kind::kGrammar);
  EXPECT_TRUE(Matches(r, kWeather));
  EXPECT_TRUE(Matches(r, kNode));  // $refs of a tool's parameters point into its own schema
  EXPECT_TRUE(Matches(r, "It is sunny."));
  EXPECT_TRUE(Matches(r, ""));
  EXPECT_TRUE(Matches(r, "<b>bold</b>"));
  EXPECT_TRUE(Matches(r, "<tool_cal"));  // a proper prefix of the marker is text
  EXPECT_FALSE(Matches(r, "<tool_call>sunny"));  // after the marker: a call
  EXPECT_FALSE(Matches(r, R"(<tool_call>{"name":"other","arguments":{}}</tool_call>)"));
  EXPECT_FALSE(Matches(r, R"(<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>)"));
  EXPECT_FALSE(Matches(r, kWeather + kWeather));  // one call
  // The tools are described to the model in a system message before the conversation.
  EXPECT_EQ(r.params.prompt.text->rfind("System: You can call these tools:\n- get_weather: Weather now.", 0), 0u)
      << *r.params.prompt.text;
}

TEST(OpenAiToolsTest, RequiredAndNamedForceACall) {
  OpenAiRequest req = Parse(R"(, "tool_choice": "required")");
  EXPECT_TRUE(Matches(req, kWeather));
  EXPECT_TRUE(Matches(req, kNode));
  EXPECT_FALSE(Matches(req, "It is sunny."));
  EXPECT_FALSE(Matches(req, ""));
  OpenAiRequest named = Parse(R"(, "tool_choice": {"type": "function", "function": {"name": "node"}})");
  EXPECT_TRUE(Matches(named, kNode));
  EXPECT_FALSE(Matches(named, kWeather));
}

struct Call {
  std::string name, arguments;
};
struct Read {
  std::string content;
  std::vector<Call> calls;
  bool call = false, complete = false;
};

Read ReadInChunks(const std::string& text, size_t chunk) {
  ToolCallReader reader;
  Read out;
  auto take = [&](const ToolCallReader::Piece& p) {
    out.content += p.content;
    for (const auto& d : p.calls) {
      if (d.name) {
        EXPECT_EQ(d.index, static_cast<int>(out.calls.size()));  // names come once, in order
        out.calls.push_back({*d.name, ""});
      }
      ASSERT_EQ(d.index + 1, static_cast<int>(out.calls.size()));
      out.calls.back().arguments += d.arguments;
    }
  };
  for (size_t i = 0; i < text.size(); i += chunk) take(reader.Add(text.substr(i, chunk)));
  take(reader.Finish());
  out.call = reader.is_call();
  out.complete = reader.calls_complete();
  return out;
}

TEST(OpenAiToolsTest, ReaderSplitsTextAndCallsInAnyChunking) {
  for (size_t chunk : {1u, 2u, 5u, 1000u}) {
    Read call = ReadInChunks(kWeather, chunk);
    EXPECT_TRUE(call.call && call.complete) << chunk;
    EXPECT_EQ(call.content, "");
    ASSERT_EQ(call.calls.size(), 1u);
    EXPECT_EQ(call.calls[0].name, "get_weather");
    EXPECT_EQ(call.calls[0].arguments, R"({"city":"Paris","unit":"c"})") << chunk;
    for (const std::string text : {"It is sunny.", "<b>x</b>", "<tool", ""}) {
      Read t = ReadInChunks(text, chunk);
      EXPECT_FALSE(t.call);
      EXPECT_EQ(t.content, text);
    }
    Read cut = ReadInChunks(R"(<tool_call>{"name":"get_weather","arguments":{"city":"Par)", chunk);
    EXPECT_TRUE(cut.call);
    EXPECT_FALSE(cut.complete);
    ASSERT_EQ(cut.calls.size(), 1u);
    EXPECT_EQ(cut.calls[0].name, "get_weather");
    EXPECT_EQ(cut.calls[0].arguments, R"({"city":"Par)");
    // Braces and the closing marker inside strings belong to the arguments.
    const std::string tricky = R"(<tool_call>{"name":"f","arguments":{"s":"}</tool_call>\"{["}}</tool_call>)";
    Read t = ReadInChunks(tricky, chunk);
    EXPECT_TRUE(t.complete);
    ASSERT_EQ(t.calls.size(), 1u);
    EXPECT_EQ(t.calls[0].arguments, R"({"s":"}</tool_call>\"{["})");
  }
}

TEST(OpenAiToolsTest, ReaderReadsSeveralCalls) {
  for (size_t chunk : {1u, 3u, 1000u}) {
    Read two = ReadInChunks(kWeather + "\n" + kNode, chunk);
    EXPECT_TRUE(two.complete) << chunk;
    ASSERT_EQ(two.calls.size(), 2u);
    EXPECT_EQ(two.calls[0].name, "get_weather");
    EXPECT_EQ(two.calls[1].name, "node");
    EXPECT_EQ(two.calls[1].arguments, R"({"v":1,"next":{"v":2,"next":null}})");
    Read ended = ReadInChunks(kWeather + "\n" + kNode + "\n\n", chunk);  // a blank line ends them
    EXPECT_TRUE(ended.complete) << chunk;
    EXPECT_EQ(ended.calls.size(), 2u);
    EXPECT_EQ(ended.content, "");
    Read half = ReadInChunks(kWeather + "\n<tool_ca", chunk);  // cut by max_tokens
    EXPECT_FALSE(half.complete);
    EXPECT_EQ(half.calls.size(), 1u);
  }
  std::string content;
  bool complete = false;
  auto calls = ReadToolCalls(kWeather + "\n" + kWeather, &content, &complete);
  EXPECT_TRUE(complete);
  EXPECT_EQ(calls.size(), 2u);
  EXPECT_EQ(content, "");
}

TEST(OpenAiToolsTest, ParallelToolCallsAllowSeveralCallsOnePerLine) {
  OpenAiRequest r = Parse(R"(, "parallel_tool_calls": true)");
  EXPECT_TRUE(Matches(r, kWeather));
  EXPECT_TRUE(Matches(r, kWeather + "\n" + kNode + "\n" + kWeather));
  EXPECT_TRUE(Matches(r, kWeather + "\n" + kNode + "\n\n"));  // a blank line may end them
  EXPECT_FALSE(Matches(r, kWeather + "\n\n\n"));
  EXPECT_FALSE(Matches(r, kWeather + "\n\n" + kNode));
  EXPECT_FALSE(Matches(r, kWeather + kNode));  // one per line
  EXPECT_FALSE(Matches(r, kWeather + "\nsunny"));
  EXPECT_TRUE(Matches(r, "It is sunny."));
  OpenAiRequest req = Parse(R"(, "parallel_tool_calls": true, "tool_choice": "required")");
  EXPECT_TRUE(Matches(req, kNode + "\n" + kNode));
  EXPECT_FALSE(Matches(req, ""));
  // A named function is one call.
  OpenAiRequest named = Parse(R"(, "parallel_tool_calls": true, "tool_choice": {"type": "function", "function": {"name": "node"}})");
  EXPECT_FALSE(Matches(named, kNode + "\n" + kNode));
}

}  // namespace
}  // namespace rwkvx
