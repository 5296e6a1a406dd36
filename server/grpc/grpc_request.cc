#include "server/grpc/grpc_request.h"

#include <vector>

#include "absl/time/clock.h"
#include "engine/status_macros.h"
#include "server/service/chat_format.h"
#include "server/service/tools.h"

namespace rwkvx {
namespace {

namespace pb = ::rwkvx::v1;

// The fields GenerateRequest and ChatRequest share (same names, same meaning).
template <typename Request>
void CommonFromProto(const Request& r, std::chrono::system_clock::time_point deadline, GenerateParams* p) {
  p->model = r.model();
  if (r.max_tokens() != 0) p->max_tokens = r.max_tokens();
  const auto& s = r.sampling();
  if (s.has_temperature()) p->temperature = s.temperature();
  if (s.has_top_p()) p->top_p = s.top_p();
  if (s.has_top_k()) p->top_k = s.top_k();
  if (s.has_presence_penalty()) p->presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) p->frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) p->seed = s.seed();
  p->stop.assign(r.stop().begin(), r.stop().end());
  p->stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  p->logprobs = r.logprobs() || r.top_logprobs() > 0;
  p->top_logprobs = r.top_logprobs();
  switch (r.output_format_case()) {
    case Request::kJsonObject:
      if (r.json_object()) p->output_format = {OutputFormat::Kind::kJsonObject, "", "json_object"};
      break;
    case Request::kJsonSchema:
      p->output_format = {OutputFormat::Kind::kJsonSchema, r.json_schema(), "json_schema"};
      break;
    case Request::kGrammar:
      p->output_format = {OutputFormat::Kind::kGrammar, r.grammar(), "grammar"};
      break;
    case Request::kRegex:
      p->output_format = {OutputFormat::Kind::kRegex, r.regex(), "regex"};
      break;
    default:
      break;
  }
  for (const auto& [id, bias] : r.logit_bias()) p->logit_bias.emplace_back(id, bias);
  if (r.min_tokens() != 0) p->min_tokens = r.min_tokens();
  p->ignore_eos = r.ignore_eos();
  p->initial_state = r.initial_state();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    p->timeout = absl::FromChrono(deadline) - absl::Now();
    if (*p->timeout <= absl::ZeroDuration()) p->timeout = absl::Milliseconds(1);
  }
}

absl::Status Bad(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

}  // namespace

GenerateParams GenerateParamsFromProto(const pb::GenerateRequest& r,
                                       std::chrono::system_clock::time_point deadline) {
  GenerateParams p;
  CommonFromProto(r, deadline, &p);
  p.prompt = PromptFromProto(r);
  p.session_id = r.session_id();
  return p;
}

absl::StatusOr<ChatParams> ChatParamsFromProto(const pb::ChatRequest& r,
                                               std::chrono::system_clock::time_point deadline) {
  ChatParams c;
  CommonFromProto(r, deadline, &c.params);
  std::vector<ChatMessage> msgs;
  for (const pb::ChatMessage& m : r.messages()) {
    ChatMessage cm{m.role(), m.content(), {}};
    for (const pb::ChatToolCall& call : m.tool_calls()) {
      if (!ValidToolName(call.name())) {
        return Bad("a message tool call's name must be 1-64 characters of [A-Za-z0-9_-]");
      }
      cm.tool_calls.push_back({call.name(), CompactToolArguments(call.arguments().empty() ? "{}" : call.arguments())});
    }
    msgs.push_back(std::move(cm));
  }
  ToolChoice choice;
  if (r.has_tool_choice()) {
    const pb::ToolChoice& tc = r.tool_choice();
    if (tc.has_function()) {
      choice.mode = ToolChoice::Mode::kNamed;
      choice.name = tc.function();
    } else if (tc.mode() == "none") {
      choice.mode = ToolChoice::Mode::kNone;
    } else if (tc.mode() == "required") {
      choice.mode = ToolChoice::Mode::kRequired;
    } else if (tc.mode() != "auto" && !tc.mode().empty()) {
      return Bad("tool_choice.mode must be \"auto\", \"none\" or \"required\"");
    }
  }
  if (r.tools_size() > 0 && r.output_format_case() != pb::ChatRequest::OUTPUT_FORMAT_NOT_SET &&
      choice.mode != ToolChoice::Mode::kNone) {
    return Bad("tools with an output_format (json_object, json_schema, grammar) are not supported");
  }
  std::vector<ToolSpec> specs;
  for (const pb::ChatTool& t : r.tools()) specs.push_back({t.name(), t.description(), t.parameters()});
  auto tools = ApplyToolSpecs(specs, choice, r.parallel_tool_calls(), "", &msgs, &c.params.output_format);
  if (!tools.ok()) return tools.status();
  c.tools = *tools;
  auto prompt = BuildChatPrompt(msgs);
  if (!prompt.ok()) return prompt.status();
  c.params.prompt.text = std::move(*prompt);
  c.params.stop.push_back(kChatStop);
  return c;
}

}  // namespace rwkvx
