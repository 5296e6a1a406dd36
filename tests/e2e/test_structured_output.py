"""Structured output with real clients: the `openai` package's `chat.completions.parse`
with a pydantic model, response_format json_object / json_schema, a GBNF `grammar`, bad
schemas and grammars refused with the reason; the same over gRPC (tools: test_tools.py); and a
random-weight model with the world vocabulary (multi-byte tokens under the masks)."""
import json
import re
from typing import Literal

import grpc
import openai
import pydantic
import pytest

from e2e_util import model_id
from test_model_file import checkpoint, VOCAB  # noqa: F401  (the world-vocabulary model fixture)


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=16)
    age: int = pydantic.Field(ge=0, le=150)
    active: bool
    color: Literal["red", "green", "blue"]


PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 16},
                   "age": {"type": "integer", "minimum": 0, "maximum": 150},
                   "active": {"type": "boolean"},
                   "color": {"enum": ["red", "green", "blue"]}},
    "required": ["name", "age", "active", "color"],
}

YES_NO = 'root ::= ("yes" | "no") " " [0-9] [0-9]? [0-9]?'
YES_NO_RE = re.compile(r"(yes|no) [0-9]{1,3}")


def parsed_over_seeds(client, model, ask):
    """chat.completions.parse with `model` at temperature 1 for seeds 1-6: each choice, which
    ended by the grammar (stop) and parsed into `model`."""
    out = []
    for seed in range(1, 7):
        r = client.chat.completions.parse(
            model=model_id(client), messages=[{"role": "user", "content": ask}],
            response_format=model, temperature=1.0, seed=seed, max_tokens=300)
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        assert isinstance(choice.message.parsed, model)
        model.model_validate_json(choice.message.content)
        out.append(choice)
    return out


def test_parse_with_pydantic_model_over_seeds(client):
    for choice in parsed_over_seeds(client, Person, "Describe a person."):
        assert " " not in choice.message.content.replace(choice.message.parsed.name, "")  # compact


class Ticket(pydantic.BaseModel):
    # JSON schema `pattern` (docs/GRAMMAR.md), with characters the JSON text must write
    # escaped (a quote, a backslash). (Anchored: an unanchored side lets a weak model write
    # on past max_tokens; tests/unit/grammar_json_schema_test.cc checks those.)
    code: str = pydantic.Field(pattern=r"^[A-Z]{3}-\d{4}$")
    email: str = pydantic.Field(pattern=r"^[a-z]{1,8}@[a-z]{1,8}\.(com|org)$")
    note: str = pydantic.Field(pattern=r'^(x"\\y|[a-z]{2})$')


def test_patterns_over_seeds(client):
    for choice in parsed_over_seeds(client, Ticket, "A ticket."):  # pydantic checked every pattern
        t = choice.message.parsed
        assert re.fullmatch(r"[A-Z]{3}-\d{4}", t.code) and re.fullmatch(r'x"\\y|[a-z]{2}', t.note)
        assert json.loads(choice.message.content)["note"] == t.note


def test_json_schema_streaming_matches_and_stops(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA}}
    args = dict(model=model_id(client), messages=[{"role": "user", "content": "A person:"}],
                response_format=fmt, temperature=1.0, seed=11, max_tokens=300)
    full = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(stream=True, **args))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    Person.model_validate_json(text)
    # The properties come in the schema's order.
    assert list(json.loads(text)) == ["name", "age", "active", "color"]


def test_each_choice_follows_the_schema(client):
    # n choices: each has its own matcher over the one compiled grammar.
    r = client.chat.completions.parse(model=model_id(client), messages=[{"role": "user", "content": "People:"}],
                                      response_format=Person, temperature=1.0, seed=21, n=3, max_tokens=300,
                                      logprobs=True)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    for c in r.choices:
        assert c.finish_reason == "stop" and isinstance(c.message.parsed, Person)
        # Log-probabilities are over the allowed tokens (the mask renormalises).
        assert all(t.logprob <= 0 for t in c.logprobs.content)
        assert "".join(t.token for t in c.logprobs.content) == c.message.content


def test_json_object(client):
    # Any JSON object has unbounded strings, which this small model fills with prose: a
    # bias towards '"' and '}' (ids 35, 126) keeps the objects short; the grammar keeps
    # them valid.
    for seed in range(1, 6):
        r = client.chat.completions.create(
            model=model_id(client), messages=[{"role": "user", "content": "Give me a JSON object with a name and an age."}],
            response_format={"type": "json_object"}, temperature=1.0, seed=seed, max_tokens=300,
            logit_bias={"35": 5, "126": 5})
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_gbnf_grammar_on_completions(client):
    for seed in range(1, 6):
        r = client.completions.create(model=model_id(client), prompt="Answer:", max_tokens=20,
                                      temperature=1.0, seed=seed, extra_body={"grammar": YES_NO})
        assert r.choices[0].finish_reason == "stop"
        assert YES_NO_RE.fullmatch(r.choices[0].text), r.choices[0].text


def test_bad_schema_and_grammar_are_400_with_the_reason(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=model_id(client), messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "bad", "schema": {"type": "object", "patternProperties": {"^a": {}}}}})
    assert "response_format.json_schema.schema" in str(e.value)
    assert "patternProperties" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id(client), prompt="x",
                                  extra_body={"grammar": "root ::= missing"})
    assert "grammar" in str(e.value) and "missing" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model_id(client), messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "xml"})
    assert "response_format.type" in str(e.value)


PHONE = r"\(\d{3}\) \d{3}-\d{4}"


def test_vllm_guided_fields(client):
    # vLLM's guided decoding fields: guided_regex (the whole output matches), guided_choice
    # (exactly one of the strings), guided_json (a schema), guided_grammar (GBNF).
    m = model_id(client)
    for seed in (1, 2, 3):
        t = client.completions.create(model=m, prompt="Phone:", max_tokens=40, temperature=1.0, seed=seed,
                                      extra_body={"guided_regex": PHONE}).choices[0]
        assert t.finish_reason == "stop" and re.fullmatch(PHONE, t.text), t.text
        choices = ["yes", "no", "maybe (later)", 'a "quoted" one']
        c = client.chat.completions.create(model=m, messages=[{"role": "user", "content": "Pick one."}],
                                           max_tokens=20, temperature=1.0, seed=seed,
                                           extra_body={"guided_choice": choices}).choices[0]
        assert c.finish_reason == "stop" and c.message.content in choices, c.message.content
        j = client.chat.completions.create(model=m, messages=[{"role": "user", "content": "Describe a person."}],
                                           max_tokens=300, temperature=1.0, seed=seed,
                                           extra_body={"guided_json": PERSON_SCHEMA}).choices[0]
        assert j.finish_reason == "stop"
        Person.model_validate_json(j.message.content)
        g = client.completions.create(model=m, prompt="Answer:", max_tokens=20, temperature=1.0, seed=seed,
                                      extra_body={"guided_grammar": YES_NO}).choices[0]
        assert g.finish_reason == "stop" and YES_NO_RE.fullmatch(g.text), g.text
    j = client.chat.completions.create(model=m, messages=[{"role": "user", "content": "x"}], max_tokens=300,
                                       extra_body={"guided_json": json.dumps(PERSON_SCHEMA)}).choices[0]
    Person.model_validate_json(j.message.content)  # the schema as JSON text works too
    for body, needle in [({"guided_regex": r"(\w)\1"}, "guided_regex: regex: backreferences"),
                         ({"guided_choice": []}, "'guided_choice' must be a non-empty array"),
                         ({"guided_json": 3}, "'guided_json' must be a JSON schema"),
                         ({"guided_regex": "a", "guided_choice": ["a"]}, "give one of"),
                         ({"guided_regex": "a", "grammar": 'root ::= "a"'}, "give one of"),
                         ({"guided_whitespace_pattern": " "}, "'guided_whitespace_pattern'")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=m, prompt="x", max_tokens=5, extra_body=body)
        assert needle in str(e.value), (body, str(e.value))


def test_grpc_structured_output(server, grpc_stubs):
    pb, pbg = grpc_stubs
    with grpc.insecure_channel(server.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)

        def run(**kw):
            events = list(stub.Generate(pb.GenerateRequest(text="Answer:", max_tokens=300,
                                                           sampling=pb.SamplingParams(temperature=1.0, seed=5),
                                                           **kw), timeout=120))
            return "".join(e.text for e in events), events[-1].finish_reason

        text, finish = run(json_schema=json.dumps(PERSON_SCHEMA))
        assert finish == "stop"
        Person.model_validate_json(text)
        text, finish = run(grammar=YES_NO)
        assert finish == "stop" and YES_NO_RE.fullmatch(text), text
        text, finish = run(json_object=True, logit_bias={35: 5.0, 126: 5.0})  # short strings: as above
        assert finish == "stop" and isinstance(json.loads(text), dict)
        with pytest.raises(grpc.RpcError) as e:
            run(json_schema='{"type": "object", "patternProperties": {}}')
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "patternProperties" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            run(grammar="root ::= (")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "grammar" in e.value.details()
        text, finish = run(regex=PHONE)
        assert finish == "stop" and re.fullmatch(PHONE, text), text
        with pytest.raises(grpc.RpcError) as e:
            run(regex="(a")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "regex" in e.value.details()


def test_world_vocabulary_structured_output(make_server, checkpoint):  # noqa: F811
    srv = make_server("--model", checkpoint, "--vocab", VOCAB, "--model-name", "tiny")
    c = openai.OpenAI(base_url=srv.base + "/v1", api_key="x", max_retries=0)
    for seed in (1, 2, 3):
        r = c.chat.completions.parse(model="tiny", messages=[{"role": "user", "content": "Describe a person."}],
                                     response_format=Person, temperature=1.0, seed=seed, max_tokens=200)
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        assert isinstance(r.choices[0].message.parsed, Person)
        t = c.completions.create(model="tiny", prompt="Answer:", max_tokens=20, temperature=1.0, seed=seed,
                                 extra_body={"grammar": YES_NO})
        assert t.choices[0].finish_reason == "stop" and YES_NO_RE.fullmatch(t.choices[0].text)
