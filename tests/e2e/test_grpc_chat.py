"""grpcio against rwkvx.v1.Inference/Chat (the chat format, tools, tool-call deltas) and
Generate's echo; and parallel tool calls through the `openai` package. The gRPC reply must
equal the HTTP reply for the same conversation and seed."""
import json

import grpc
import openai
import pytest

from e2e_util import model_id
from test_tools import ASK, MODELS, TOOLS


@pytest.fixture(scope="module")
def stub(server, grpc_stubs):
    _, pbg = grpc_stubs
    ch = grpc.insecure_channel(server.grpc_target)
    yield pbg.InferenceStub(ch)
    ch.close()


def grpc_tools(pb):
    return [pb.ChatTool(name=t["function"]["name"], description=t["function"]["description"],
                        parameters=json.dumps(t["function"]["parameters"])) for t in TOOLS]


def chat(stub, pb, messages, sampling=None, **kw):
    req = pb.ChatRequest(messages=[pb.ChatMessage(**m) for m in messages], **kw)
    if sampling:
        req.sampling.CopyFrom(pb.SamplingParams(**sampling))
    events = list(stub.Chat(req, timeout=120))
    calls = []
    for e in events:
        for d in e.tool_calls:
            if d.name:
                assert d.index == len(calls) and d.id.startswith("call_")
                calls.append({"id": d.id, "name": d.name, "arguments": ""})
            assert d.index == len(calls) - 1
            calls[-1]["arguments"] += d.arguments
    return "".join(e.text for e in events), calls, events[-1]


def test_chat_matches_http(stub, grpc_stubs, client):
    pb, _ = grpc_stubs
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    text, calls, last = chat(stub, pb, msgs, sampling={"temperature": 0.0}, max_tokens=24)
    http = client.chat.completions.create(model=model_id(client), messages=msgs, temperature=0, max_tokens=24)
    assert text == http.choices[0].message.content and not calls
    assert last.finish_reason == http.choices[0].finish_reason
    assert last.usage.prompt_tokens == http.usage.prompt_tokens
    assert last.usage.completion_tokens == http.usage.completion_tokens


def test_required_call_over_seeds(stub, grpc_stubs):
    pb, _ = grpc_stubs
    for seed in range(1, 5):
        text, calls, last = chat(stub, pb, ASK, sampling={"temperature": 1.0, "seed": seed}, max_tokens=200,
                                 tools=grpc_tools(pb), tool_choice=pb.ToolChoice(mode="required"))
        assert text == "" and len(calls) == 1, (text, calls)
        assert last.finish_reason == "tool_calls"
        MODELS[calls[0]["name"]].model_validate_json(calls[0]["arguments"])


def test_named_call_matches_http(stub, grpc_stubs, client):
    pb, _ = grpc_stubs
    _, calls, last = chat(stub, pb, ASK, sampling={"temperature": 1.0, "seed": 3}, max_tokens=200,
                          tools=grpc_tools(pb), tool_choice=pb.ToolChoice(function="add"))
    http = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, seed=3,
                                          tool_choice={"type": "function", "function": {"name": "add"}},
                                          temperature=1.0, max_tokens=200)
    (hc,) = http.choices[0].message.tool_calls
    assert [(c["name"], c["arguments"]) for c in calls] == [(hc.function.name, hc.function.arguments)]
    assert last.finish_reason == "tool_calls"


def test_parallel_calls_grpc_and_http(stub, grpc_stubs, client):
    pb, _ = grpc_stubs
    for seed in (1, 2, 3):
        _, calls, last = chat(stub, pb, ASK, sampling={"temperature": 1.0, "seed": seed}, max_tokens=300,
                              tools=grpc_tools(pb), tool_choice=pb.ToolChoice(mode="required"),
                              parallel_tool_calls=True)
        assert calls and last.finish_reason in ("tool_calls", "length")
        # Every call is valid; one cut by max_tokens (the last) is a prefix.
        complete = calls if last.finish_reason == "tool_calls" else calls[:-1]
        for c in complete:
            MODELS[c["name"]].model_validate_json(c["arguments"])
        http = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, seed=seed,
                                              tool_choice="required", parallel_tool_calls=True,
                                              temperature=1.0, max_tokens=300)
        assert http.choices[0].finish_reason == last.finish_reason
        if last.finish_reason == "tool_calls":
            hcalls = http.choices[0].message.tool_calls
            assert [(c.function.name, c.function.arguments) for c in hcalls] == [
                (c["name"], c["arguments"]) for c in calls]
            assert len({c.id for c in hcalls}) == len(hcalls)
        # Streamed: the deltas of each index add up to that call.
        chunks = list(client.chat.completions.create(
            model=model_id(client), messages=ASK, tools=TOOLS, seed=seed, tool_choice="required",
            parallel_tool_calls=True, temperature=1.0, max_tokens=300, stream=True))
        streamed = {}
        for ch in chunks:
            for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                if d.id:
                    streamed[d.index] = [d.function.name, ""]
                streamed[d.index][1] += d.function.arguments or ""
        assert [tuple(streamed[i]) for i in sorted(streamed)] == [(c["name"], c["arguments"]) for c in calls]


def test_tool_results_in_the_history(stub, grpc_stubs, client):
    pb, _ = grpc_stubs
    history = ASK + [
        {"role": "assistant", "tool_calls": [pb.ChatToolCall(id="call_1", name="get_weather",
                                                             arguments='{"city": "Paris", "unit": "c"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"}]
    _, _, last = chat(stub, pb, history, sampling={"temperature": 0.0}, max_tokens=4, tools=grpc_tools(pb))
    http_history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"}]
    http = client.chat.completions.create(model=model_id(client), messages=http_history, tools=TOOLS,
                                          temperature=0, max_tokens=4)
    assert last.usage.prompt_tokens == http.usage.prompt_tokens


def test_bad_chat_requests_are_invalid_argument(stub, grpc_stubs):
    pb, _ = grpc_stubs
    tools = grpc_tools(pb)
    cases = [
        (dict(tools=[pb.ChatTool(name="bad name")]), "tools[0].name"),
        (dict(tools=[pb.ChatTool(name="f", parameters='{"type": "object", "properties": {"a": {"pattern": "(a)\\\\1"}}}')]),
         "tools[0].parameters: "),
        (dict(tools=[pb.ChatTool(name="f", parameters="[1")]), "tools[0].parameters must be a JSON schema object"),
        (dict(tools=[pb.ChatTool(name="f"), pb.ChatTool(name="f")]), "used twice"),
        (dict(tools=tools, tool_choice=pb.ToolChoice(function="nope")), "'nope'"),
        (dict(tools=tools, tool_choice=pb.ToolChoice(mode="sometimes")), "tool_choice.mode"),
        (dict(tool_choice=pb.ToolChoice(mode="required")), "needs 'tools'"),
        (dict(tools=tools, json_object=True), "output_format"),
    ]
    for kw, what in cases:
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Chat(pb.ChatRequest(messages=[pb.ChatMessage(**m) for m in ASK], **kw), timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and what in e.value.details(), e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Chat(pb.ChatRequest(messages=[pb.ChatMessage(role="wizard", content="x")]), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Chat(pb.ChatRequest(), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_generate_echo(stub, grpc_stubs, client):
    pb, _ = grpc_stubs
    req = dict(max_tokens=6, ignore_eos=True, echo=True)
    s = pb.SamplingParams(temperature=0.0)
    ev = list(stub.Generate(pb.GenerateRequest(text="Once upon", sampling=s, **req), timeout=60))
    text = "".join(e.text for e in ev)
    http = client.completions.create(model=model_id(client), prompt="Once upon", echo=True, temperature=0,
                                     max_tokens=6, extra_body={"ignore_eos": True})
    assert text == http.choices[0].text and text.startswith("Once upon")
    ids = list(stub.Tokenize(pb.TokenizeRequest(text="Once upon"), timeout=10).token_ids)
    ev = list(stub.Generate(pb.GenerateRequest(token_ids=pb.TokenIds(ids=ids), sampling=s, **req), timeout=60))
    assert "".join(e.text for e in ev) == text
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(pb.GenerateRequest(text="x", echo=True, logprobs=True), timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "echo" in e.value.details()
