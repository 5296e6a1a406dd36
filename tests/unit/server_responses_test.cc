// /v1/responses below HTTP: the chat format cut into pieces, request parsing, the response
// bodies and events, the records, and Service::CreateResponse over the fake backend (a
// chain through the previous response equals the whole conversation sent at once).
#include "gtest/gtest.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/openai/responses_request.h"
#include "server/openai/responses_response.h"
#include "server/testing/stream_collector.h"
#include "tests/unit/server_service_env.h"

namespace rwkvx {
namespace {

using json = nlohmann::json;
using testing::Await;
using testing::ServiceEnv;
using Started = absl::StatusOr<std::shared_ptr<ResponseGeneration>>;

TEST(ChatPiecesTest, JoinIsTheChatPromptAndCutsAtTheAnswers) {
  std::vector<ChatMessage> m = {{"system", "s"}, {"user", "hi"}, {"assistant", " hello\n\n\nx "},
                                {"user", "bye"}};
  auto pieces = BuildChatPieces(m, false);
  ASSERT_TRUE(pieces.ok());
  EXPECT_EQ(absl::StrJoin(*pieces, ""), *BuildChatPrompt(m));
  EXPECT_EQ(*pieces, (std::vector<std::string>{"System: s\n\nUser: hi\n\nAssistant:", " hello\nx",
                                               "\n\nUser: bye\n\nAssistant:"}));
  EXPECT_EQ(ChatAnswerPiece(" hello\n\n\nx "), " hello\nx");
  auto cont = BuildChatPieces({{"user", "more"}}, true);
  EXPECT_EQ(*cont, std::vector<std::string>{"\n\nUser: more\n\nAssistant:"});
  EXPECT_FALSE(BuildChatPieces({}, true).ok());
  EXPECT_FALSE(BuildChatPieces({{"function", "x"}}, false).ok());  // "tool" is a role since tool calls
}

absl::StatusOr<ResponsesRequest> Parse(const json& j) { return ParseResponsesRequest(j.dump(), 64); }

TEST(ResponsesRequestTest, Fields) {
  auto r = Parse({{"model", "m"}, {"input", "hi"}, {"instructions", "be brief"},
                  {"max_output_tokens", 5}, {"temperature", 0.5}, {"top_p", 0.9},
                  {"stream", true}, {"store", false}, {"previous_response_id", "resp_1"},
                  {"metadata", {{"a", "b"}}}, {"user", "u"}, {"tools", json::array()},
                  {"text", {{"format", {{"type", "text"}}}}}, {"truncation", nullptr}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->params.model, "m");
  ASSERT_EQ(r->turn.input.size(), 1u);
  EXPECT_EQ(r->turn.input[0].role, "user");
  EXPECT_EQ(*r->instructions, "be brief");
  EXPECT_EQ(*r->params.max_tokens, 5);
  EXPECT_TRUE(r->stream);
  EXPECT_FALSE(r->turn.store);
  EXPECT_EQ(r->turn.previous, "resp_1");
  EXPECT_EQ(r->metadata.at("a"), "b");
  auto list = Parse({{"input", {{{"role", "developer"}, {"content", "d"}},
                                {{"type", "message"}, {"role", "assistant"}, {"id", "msg_1"},
                                 {"status", "completed"},
                                 {"content", {{{"type", "output_text"}, {"text", "x"},
                                               {"annotations", json::array()}}}}},
                                {{"role", "user"}, {"content", {{{"type", "input_text"}, {"text", "a"}},
                                                                {{"type", "input_text"}, {"text", "b"}}}}}}}});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->turn.input.size(), 3u);
  EXPECT_EQ(list->turn.input[1].content, "x");
  EXPECT_EQ(list->turn.input[2].content, "ab");
}

TEST(ResponsesRequestTest, RefusesWhatItDoesNotDo) {
  for (const json& j : {json{{"input", "hi"}, {"tools", {{{"type", "function"}}}}},
                        json{{"input", "hi"}, {"reasoning", {{"effort", "low"}}}},
                        json::parse(R"({"input": "hi", "text": {"format": {"type": "yaml"}}})"),
                        json::parse(R"({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}})"),
                        json::parse(R"({"input": "hi", "text": {"format": {"type": "json_schema", "schema": 3}}})"),
                        json::parse(R"({"input": "hi", "text": {"format": {"type": "text", "name": "x"}}})"),
                        json::parse(R"({"input": "hi", "text": {"verbosity": "low"}})"),
                        json{{"input", "hi"}, {"truncation", "auto"}},
                        json{{"input", "hi"}, {"background", true}},
                        json{{"model", "m"}},
                        json{{"input", json::array()}},
                        json{{"input", {{{"role", "user"}, {"content", "a"}, {"name", "x"}}}}},
                        json{{"input", {{{"role", "assistant"}, {"content", "a"}}}}},
                        json{{"input", {{{"type", "function_call"}, {"name", "f"}}}}},
                        json{{"input", "hi"}, {"metadata", {{"k", 1}}}},
                        json{{"input", "hi"}, {"max_output_tokens", 1.5}}}) {
    auto r = Parse(j);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << j.dump();
  }
  EXPECT_FALSE(ParseResponsesRequest("{", 64).ok());
  EXPECT_FALSE(ParseResponsesRequest("[]", 64).ok());
}

TEST(ResponsesRequestTest, TextFormatBecomesTheOutputFormat) {
  auto obj = ParseResponsesRequest(R"({"input": "hi", "text": {"format": {"type": "json_object"}}})", 64);
  ASSERT_TRUE(obj.ok()) << obj.status();
  EXPECT_EQ(obj->params.output_format.kind, OutputFormat::Kind::kJsonObject);
  // The schema keeps the client's key order (the order properties are generated in).
  auto schema = ParseResponsesRequest(
      R"({"input": "hi", "text": {"format": {"type": "json_schema", "name": "p", "strict": true,
          "schema": {"type": "object", "properties": {"z": {"type": "integer"}, "a": {"type": "string"}}}}}})", 64);
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(schema->params.output_format.kind, OutputFormat::Kind::kJsonSchema);
  EXPECT_LT(schema->params.output_format.text.find("\"z\""), schema->params.output_format.text.find("\"a\""));
  EXPECT_EQ(schema->params.output_format.where, "text.format.schema");
  EXPECT_NE(schema->text_format.find("\"name\":\"p\""), std::string::npos);
  auto text = ParseResponsesRequest(R"({"input": "hi", "text": {"format": {"type": "text"}}})", 64);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->params.output_format.kind, OutputFormat::Kind::kText);
}

TEST(ResponsesRequestTest, FunctionToolsAndTheirRoundTripItems) {
  auto r = ParseResponsesRequest(R"({"input": [
      {"role": "user", "content": "weather?"},
      {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get", "arguments": "{ \"z\": 1 }",
       "status": "completed"},
      {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "sun"}]}],
    "tools": [{"type": "function", "name": "get", "parameters": {"type": "object",
               "properties": {"z": {"type": "integer"}, "a": {"type": "string"}}}, "strict": true}],
    "tool_choice": "required", "parallel_tool_calls": true})", 64);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->tools.calls);
  EXPECT_TRUE(r->tools.parallel);
  EXPECT_EQ(r->tools.choice_json, "\"required\"");
  EXPECT_LT(r->tools.tools_json.find("\"z\""), r->tools.tools_json.find("\"a\""));  // key order kept
  EXPECT_EQ(r->params.output_format.kind, OutputFormat::Kind::kGrammar);
  ASSERT_EQ(r->turn.input.size(), 4u);  // the tools' system message, user, assistant (the call), tool
  EXPECT_EQ(r->turn.input[0].role, "system");
  EXPECT_NE(r->turn.input[0].content.find("get"), std::string::npos);
  EXPECT_EQ(r->turn.input[2].role, "assistant");
  ASSERT_EQ(r->turn.input[2].tool_calls.size(), 1u);
  EXPECT_EQ(r->turn.input[2].tool_calls[0].name, "get");
  EXPECT_EQ(r->turn.input[2].tool_calls[0].arguments, "{\"z\":1}");  // compacted
  EXPECT_EQ(r->turn.input[3].role, "tool");
  EXPECT_EQ(r->turn.input[3].content, "sun");
  EXPECT_EQ(r->call_ids, std::vector<std::string>{"call_1"});
  EXPECT_EQ(r->output_call_ids, std::vector<std::string>{"call_1"});
  // tool_choice none: the tools are checked and echoed, but nothing changes in the prompt.
  auto none = ParseResponsesRequest(R"({"input": "hi", "tools": [{"type": "function", "name": "get"}],
                                        "tool_choice": "none"})", 64);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->tools.calls);
  EXPECT_EQ(none->turn.input.size(), 1u);
  EXPECT_EQ(none->params.output_format.kind, OutputFormat::Kind::kText);
  EXPECT_NE(none->tools.tools_json.find("get"), std::string::npos);
  // No tools: the defaults echoed as before.
  auto plain = ParseResponsesRequest(R"({"input": "hi"})", 64);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->tools.calls);
  EXPECT_EQ(plain->tools.choice_json, "\"none\"");
  EXPECT_EQ(plain->tools.tools_json, "[]");
}

ResponseView View() {
  ResponseView v;
  v.id = "resp_1";
  v.message_id = "msg_1";
  v.model = "m";
  return v;
}

TEST(ResponsesBodyTest, EventsAreNumberedAndComplete) {
  ResponseView v = View();
  ResponseEvents ev;
  std::string all = ev.Start(v);
  v.text = "ab";
  all += ev.Delta(v, "a");
  all += ev.Delta(v, "b");
  GenerateEvent last;
  last.final = true;
  last.finish = FinishReason::kLength;
  last.completion_tokens = 2;
  v.Finish(last, 10, 4);
  all += ev.End(v);
  std::vector<std::string> types;
  int seq = 0;
  for (size_t at = 0; (at = all.find("data: ", at)) != std::string::npos;) {
    size_t end = all.find("\n\n", at);
    json j = json::parse(all.substr(at + 6, end - at - 6));
    EXPECT_EQ(j["sequence_number"], seq++);
    types.push_back(j["type"]);
    if (j["type"] == "response.incomplete") {
      EXPECT_EQ(j["response"]["usage"]["input_tokens_details"]["cached_tokens"], 4);
      EXPECT_EQ(j["response"]["incomplete_details"]["reason"], "max_output_tokens");
      EXPECT_EQ(j["response"]["output"][0]["content"][0]["text"], "ab");
    }
    at = end;
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "response.created", "response.in_progress", "response.output_item.added",
                       "response.content_part.added", "response.output_text.delta",
                       "response.output_text.delta", "response.output_text.done",
                       "response.content_part.done", "response.output_item.done",
                       "response.incomplete"}));
  v.status = "failed";
  v.error = absl::InternalError("x");
  EXPECT_NE(ResponseEvents().End(v).find("response.failed"), std::string::npos);
}

// With tools the items open as the reply shows what it is: a call's item, its argument
// deltas, then its done events; an empty reply still ends with an (empty) message.
TEST(ResponsesBodyTest, CallEventsOpenTheirItems) {
  auto events = [](const std::string& all) {
    std::vector<json> out;
    for (size_t at = 0; (at = all.find("data: ", at)) != std::string::npos;) {
      const size_t end = all.find("\n\n", at);
      out.push_back(json::parse(all.substr(at + 6, end - at - 6)));
      at = end;
    }
    return out;
  };
  GenerateEvent last;
  last.final = true;
  last.finish = FinishReason::kStop;
  last.completion_tokens = 5;
  ResponseView v = View();
  v.tools = true;
  v.tools_json = R"([{"type":"function","name":"get"}])";
  v.tool_choice_json = R"("required")";
  ResponseEvents ev;
  std::string all = ev.Start(v);
  v.calls.push_back({"fc_1", "call_1", "get", "{\"a\""});
  all += ev.CallDelta(v, 0, "{\"a\"");
  v.calls[0].arguments += ":1}";
  all += ev.CallDelta(v, 0, ":1}");
  v.Finish(last, 10, 0);
  all += ev.End(v);
  std::vector<json> got = events(all);
  std::vector<std::string> types;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i]["sequence_number"], static_cast<int>(i));
    types.push_back(got[i]["type"]);
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "response.created", "response.in_progress", "response.output_item.added",
                       "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                       "response.function_call_arguments.done", "response.output_item.done", "response.completed"}));
  EXPECT_EQ(got[2]["item"]["type"], "function_call");
  EXPECT_EQ(got[2]["item"]["arguments"], "");
  EXPECT_EQ(got[5]["arguments"], "{\"a\":1}");
  const json& resp = got.back()["response"];
  ASSERT_EQ(resp["output"].size(), 1u);
  EXPECT_EQ(resp["output"][0]["type"], "function_call");
  EXPECT_EQ(resp["output"][0]["call_id"], "call_1");
  EXPECT_EQ(resp["output"][0]["arguments"], "{\"a\":1}");
  EXPECT_EQ(resp["tool_choice"], "required");
  EXPECT_EQ(resp["tools"][0]["name"], "get");
  // An empty reply: the message opens and closes at the end.
  ResponseView e = View();
  e.tools = true;
  ResponseEvents ev2;
  std::string all2 = ev2.Start(e);
  e.Finish(last, 10, 0);
  all2 += ev2.End(e);
  std::vector<json> got2 = events(all2);
  ASSERT_EQ(got2.size(), 8u);
  EXPECT_EQ(got2[2]["type"], "response.output_item.added");
  EXPECT_EQ(got2[2]["item"]["type"], "message");
  EXPECT_EQ(got2[7]["response"]["output"][0]["type"], "message");
}

TEST(ResponsesBodyTest, RecordsKeepTheNewest) {
  ResponseRecords rec(2);
  for (const char* id : {"a", "b", "c"}) {
    ResponseView v = View();
    v.id = id;
    rec.Put(v);
  }
  EXPECT_FALSE(rec.Get("a"));
  EXPECT_TRUE(rec.Get("b") && rec.Get("c"));
  EXPECT_TRUE(rec.Erase("b"));
  EXPECT_FALSE(rec.Erase("b"));
}

struct Turn {
  std::string text;
  int64_t input_tokens = 0, carried = 0;
};

Turn Respond(ServiceEnv& e, std::vector<ChatMessage> input, std::string previous, std::string id,
             bool store = true) {
  GenerateParams p;
  p.max_tokens = 3;
  p.temperature = 0;
  ResponseTurn t{std::move(input), std::move(previous), std::move(id), store};
  Started g = Await<Started>([&](auto cb) { e.svc->CreateResponse(p, t, cb); });
  EXPECT_TRUE(g.ok()) << g.status();
  if (!g.ok()) return {};
  testing::StreamCollector collector((*g)->stream());
  testing::Collected c = collector.WaitFinal();
  absl::Status s = Await<absl::Status>([&](auto cb) { (*g)->Finish(c.final_event, c.text, cb); });
  EXPECT_TRUE(s.ok()) << s;
  return {c.text, (*g)->input_tokens(), (*g)->carried_tokens()};
}

TEST(ServiceResponsesTest, AChainEqualsTheWholeConversation) {
  SchedulerOptions o;
  o.prefill_chunk = 4;  // whole chunks are fed at once: the carried state holds tokens
  ServiceEnv e(o);
  Turn a = Respond(e, {{"user", "a"}}, "", "resp_a");
  Turn b = Respond(e, {{"user", "b"}}, "resp_a", "resp_b");
  EXPECT_EQ(a.carried, 0);
  EXPECT_GT(b.carried, 0);
  Turn whole = Respond(e, {{"user", "a"}, {"assistant", a.text}, {"user", "b"}}, "", "resp_w",
                       /*store=*/false);
  EXPECT_EQ(whole.text, b.text);
  EXPECT_EQ(whole.input_tokens, b.input_tokens);
  // The stored states: resp_a and resp_b (the whole one kept nothing), no working copies.
  auto list = Await<std::vector<StoredSessionInfo>>([&](auto cb) { e.svc->ListSessions(cb); });
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "resp_a");
  EXPECT_EQ(list[1].name, "resp_b");
  EXPECT_EQ(e.sched->running(), 0);
}

TEST(ServiceResponsesTest, UnknownPreviousIsNotFound) {
  ServiceEnv e;
  GenerateParams p;
  p.max_tokens = 3;
  ResponseTurn t{{{"user", "a"}}, "resp_none", "resp_x", true};
  Started g = Await<Started>([&](auto cb) { e.svc->CreateResponse(p, t, cb); });
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);
  auto list = Await<std::vector<StoredSessionInfo>>([&](auto cb) { e.svc->ListSessions(cb); });
  EXPECT_TRUE(list.empty());
}

}  // namespace
}  // namespace rwkvx
