"""Function tools on /v1/responses through the openai client (docs/API.md "Function tools"):
tool_choice required / named / none / auto, function_call output items whose arguments
follow the schema, the streamed events of a call, the round trip through
previous_response_id and through the whole conversation, retrieve, and bad tool requests
refused with the reason."""
import json
import openai
import pytest
import requests
from e2e_util import Server
from tool_models import MODELS, Add, GetWeather


def tool(model, name, description):
    schema = model.model_json_schema()
    schema.pop("title", None)
    for p in schema["properties"].values():
        p.pop("title", None)
    schema["additionalProperties"] = False
    return {"type": "function", "name": name, "description": description, "parameters": schema, "strict": True}


TOOLS = [tool(GetWeather, "get_weather", "The weather in a city now."), tool(Add, "add", "Adds two numbers.")]
ASK = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def srv():
    s = Server("--prefix-cache-bytes", "0")
    yield s
    s.close()


@pytest.fixture(scope="module")
def c(srv):
    return openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)


def create(c, input=ASK, **kw):
    kw.setdefault("max_output_tokens", 120)
    kw.setdefault("temperature", 1.0)
    return c.responses.create(model="", input=input, tools=kw.pop("tools", TOOLS), **kw)


def only_call(r):
    assert r.status == "completed", r
    assert [o.type for o in r.output] == ["function_call"]
    call = r.output[0]
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.status == "completed"
    MODELS[call.name].model_validate_json(call.arguments)
    return call


def test_required_calls_follow_the_schema_and_are_echoed(c):
    for _ in range(4):
        r = create(c, tool_choice="required")
        only_call(r)
        assert r.output_text == ""
        assert r.tool_choice == "required" and r.parallel_tool_calls is False
        assert [t.name for t in r.tools] == ["get_weather", "add"]
        assert r.tools[0].parameters == TOOLS[0]["parameters"]
        assert c.responses.retrieve(r.id).model_dump() == r.model_dump()


def test_named_tool_choice(c):
    for _ in range(3):
        r = create(c, "Add 2 and 3.", tool_choice={"type": "function", "name": "add"})
        assert only_call(r).name == "add"
        assert r.tool_choice.name == "add"


def test_none_and_auto(c):
    r = create(c, tool_choice="none", max_output_tokens=8)
    assert [o.type for o in r.output] == ["message"] and r.tool_choice == "none"
    for _ in range(4):  # auto: a message, or calls that follow the schema
        r = create(c, tool_choice="auto", max_output_tokens=60)
        assert r.tool_choice == "auto"
        kinds = [o.type for o in r.output]
        assert kinds == ["message"] or (kinds and set(kinds) == {"function_call"})
        if kinds[0] == "function_call" and r.status == "completed":
            for call in r.output:
                MODELS[call.name].model_validate_json(call.arguments)


def test_parallel_calls(c):
    r = create(c, "Weather in Paris and in Rome?", tool_choice="required", parallel_tool_calls=True,
               max_output_tokens=300)
    assert r.parallel_tool_calls is True
    if r.status == "completed":
        assert r.output and all(o.type == "function_call" for o in r.output)
        assert len({o.call_id for o in r.output}) == len(r.output)
        for call in r.output:
            MODELS[call.name].model_validate_json(call.arguments)


def test_streamed_call_events(c):
    want = create(c, tool_choice="required", temperature=0.0, store=False)
    events = list(create(c, tool_choice="required", temperature=0.0, stream=True))
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[2].item.type == "function_call" and events[2].item.arguments == ""
    assert types[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert set(types[3:-3]) == {"response.function_call_arguments.delta"}
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    final = events[-1].response
    (call,) = final.output
    assert deltas == events[-3].arguments == call.arguments == want.output[0].arguments
    assert call.name == want.output[0].name and events[-2].item.model_dump() == call.model_dump()
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_round_trip_through_previous_response_id(c):
    r = create(c, tool_choice="required")
    call = only_call(r)
    out = json.dumps({"temperature": 21, "unit": "c"})
    r2 = create(c, [{"type": "function_call_output", "call_id": call.call_id, "output": out}],
                previous_response_id=r.id, max_output_tokens=12)
    assert r2.status in ("completed", "incomplete") and r2.previous_response_id == r.id
    assert r2.usage.input_tokens_details.cached_tokens > 0  # the call was carried in the stored state
    # A call id the conversation does not have is refused, naming it.
    with pytest.raises(openai.BadRequestError) as e:
        create(c, [{"type": "function_call_output", "call_id": "call_nope", "output": out}],
               previous_response_id=r.id)
    assert "call_nope" in str(e.value)


def test_round_trip_with_the_whole_conversation(c):
    r = create(c, tool_choice="required", store=False)
    call = only_call(r)
    # The output item passed back as it came (the client's typed object), then its result.
    convo = [{"role": "user", "content": ASK}, call,
             {"type": "function_call_output", "call_id": call.call_id,
              "output": [{"type": "input_text", "text": "sunny, 21 c"}]}]
    r2 = create(c, convo, tool_choice="none", max_output_tokens=12, store=False)
    assert [o.type for o in r2.output] == ["message"]
    # The same conversation as chat messages reads the same prompt: the same greedy text.
    chat = c.chat.completions.create(model="", max_tokens=12, temperature=0.0, messages=[
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 c"}])
    r3 = create(c, convo, tools=[], max_output_tokens=12, temperature=0.0, store=False)
    assert r3.output_text == chat.choices[0].message.content


@pytest.mark.parametrize("body, needle", [
    ({"tools": [{"type": "web_search"}]}, "'tools[0].type' is 'web_search'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "'tools[0].function'"),
    ({"tools": [{"type": "function", "description": "x"}]}, "'tools[0].name' is required"),
    ({"tools": [{"type": "function", "name": "bad name"}]}, "'tools[0].name'"),
    ({"tools": [{"type": "function", "name": "f", "parameters": 3}]}, "'tools[0].parameters'"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}}]}, "tools[0].parameters: "),
    ({"tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]}, "used twice"),
    ({"tools": [{"type": "function", "name": "f", "cache": 1}]}, "'tools[0].cache'"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": "sometimes"}, "'tool_choice'"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}, "'g'"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "web_search"}}, "'tool_choice.type'"),
    ({"tool_choice": "required"}, "'tool_choice' needs 'tools'"),
    ({"tools": [{"type": "function", "name": "f"}], "parallel_tool_calls": "yes"}, "'parallel_tool_calls'"),
    ({"tools": [{"type": "function", "name": "f"}], "text": {"format": {"type": "json_object"}}},
     "'text.format' cannot be combined with 'tools'"),
    ({"input": [{"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]},
     "ends with a function_call"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f"}]}, "'arguments'"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c1", "output": 5}]}, ".output'"),
    ({"input": [{"type": "function_call_output", "call_id": "c1", "output": "x", "extra": 1}]}, "'extra'"),
], ids=lambda v: None if isinstance(v, dict) else v)
def test_bad_tool_requests_are_400(srv, body, needle):
    body = {"input": "hi", **body}
    r = requests.post(f"{srv.base}/v1/responses", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
