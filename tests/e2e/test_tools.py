"""Tool calling with the `openai` package: tool_choice required / named / auto / none,
`chat.completions.parse` with pydantic function tools (parsed arguments), streamed
tool-call deltas, tool results in the conversation, and bad tool requests refused with
the reason."""
import openai
import pytest

from e2e_util import model_id
from tool_models import MODELS, Add, GetWeather


TOOLS = [openai.pydantic_function_tool(GetWeather, name="get_weather", description="The weather in a city now."),
         openai.pydantic_function_tool(Add, name="add", description="Adds two numbers.")]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_required_call_over_seeds_parses(client):
    for seed in range(1, 7):
        r = client.chat.completions.parse(model=model_id(client), messages=ASK, tools=TOOLS, tool_choice="required",
                                          temperature=1.0, seed=seed, max_tokens=200)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        assert isinstance(call.function.parsed_arguments, MODELS[call.function.name])
        MODELS[call.function.name].model_validate_json(call.function.arguments)


def test_named_call(client):
    for seed in (1, 2, 3):
        r = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, seed=seed,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                           temperature=1.0, max_tokens=200)
        (call,) = r.choices[0].message.tool_calls
        assert call.function.name == "get_weather"
        GetWeather.model_validate_json(call.function.arguments)
        assert r.choices[0].finish_reason == "tool_calls"


def test_streamed_call_matches_the_whole_reply(client):
    args = dict(model=model_id(client), messages=ASK, tools=TOOLS, tool_choice="required", temperature=1.0,
                seed=4, max_tokens=200)
    whole = client.chat.completions.create(**args).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    deltas = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].function.name == whole.function.name and deltas[0].type == "function"
    assert all(d.index == 0 for d in deltas)
    assert "".join(d.function.arguments or "" for d in deltas) == whole.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)


def test_auto_and_none(client):
    # This small model answers in text when it may choose; whichever it picks, the reply is
    # well formed: text, or one valid call with finish_reason "tool_calls".
    for seed in (1, 2, 3):
        r = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, tool_choice="auto",
                                           temperature=1.0, seed=seed, max_tokens=40)
        m = r.choices[0]
        if m.message.tool_calls:
            assert m.finish_reason == "tool_calls"
            MODELS[m.message.tool_calls[0].function.name].model_validate_json(m.message.tool_calls[0].function.arguments)
        else:
            assert isinstance(m.message.content, str) and not m.message.content.startswith("<tool_call>")
            assert m.finish_reason in ("stop", "length")
    none = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, tool_choice="none",
                                          temperature=0, max_tokens=8)
    plain = client.chat.completions.create(model=model_id(client), messages=ASK, temperature=0, max_tokens=8)
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens  # no tools in the prompt


def test_tool_results_in_the_conversation(client):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"}]
    r = client.chat.completions.create(model=model_id(client), messages=history, tools=TOOLS, temperature=0,
                                       max_tokens=16)
    assert r.choices[0].message.tool_calls is None or r.choices[0].finish_reason == "tool_calls"
    bare = client.chat.completions.create(model=model_id(client), messages=ASK, tools=TOOLS, temperature=0, max_tokens=1)
    call_text = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}</tool_call>'
    # The call (compact, as the model would write it) and the result are in the prompt.
    assert r.usage.prompt_tokens == bare.usage.prompt_tokens + len(
        "Assistant: " + call_text + "\n\nTool: 21 degrees and sunny\n\n")


def test_bad_tool_requests_are_400(client):
    cases = [
        (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools[0].function.name"),
        (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}}}]),
         "tools[0].function.parameters: "),
        (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "'nope'"),
        (dict(tool_choice="required"), "needs 'tools'"),
        (dict(tools=TOOLS, response_format={"type": "json_object"}), "cannot be combined with 'tools'"),
    ]
    for kw, what in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model_id(client), messages=ASK, **kw)
        assert what in str(e.value), str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id(client), prompt="x", extra_body={"tools": TOOLS})
    assert "/v1/chat/completions" in str(e.value)
