"""/v1/responses through the openai client (docs/API.md "Responses"): create, retrieve,
delete, streaming events, store: false, chains through previous_response_id that prefill
only their new tokens and give exactly the tokens of the whole conversation sent at once,
stored state that moved tiers or was dropped, and every unsupported field refused."""
import json

import openai
import pydantic
import pytest
import requests
from e2e_util import Server, wait_for

PROMPT = "rwkvx_prompt_tokens_total"
STORED = "rwkvx_sessions_stored"  # every session, working copies included
CHUNK = 16  # --prefill-chunk of the module's server


@pytest.fixture(scope="module")
def srv():
    s = Server("--prefill-chunk", str(CHUNK), "--prefix-cache-bytes", "0")
    yield s
    s.close()


def client(s):
    return openai.OpenAI(base_url=s.base + "/v1", api_key="unused", max_retries=0)


def ask(c, input, **kw):
    kw.setdefault("max_output_tokens", 8)
    kw.setdefault("temperature", 0.0)
    return c.responses.create(model="", input=input, **kw)


def test_create_retrieve_delete(srv):
    c = client(srv)
    r = ask(c, "Tell me a story.", metadata={"k": "v"}, instructions="Be brief.")
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status in ("completed", "incomplete")
    assert r.metadata == {"k": "v"} and r.instructions == "Be brief."
    assert len(r.output) == 1 and r.output[0].type == "message"
    assert r.output[0].role == "assistant" and r.output[0].content[0].type == "output_text"
    assert r.output_text == r.output[0].content[0].text
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 0
    assert r.usage.input_tokens_details.cached_tokens == 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"
    got = c.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()
    # Its state is a session named after it.
    assert requests.get(f"{srv.base}/v1/sessions/{r.id}", timeout=10).status_code == 200
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(r.id)
    assert requests.get(f"{srv.base}/v1/sessions/{r.id}", timeout=10).status_code == 404


def test_streaming_events(srv):
    c = client(srv)
    want = ask(c, "Count to three.", store=False)
    types, deltas, final = [], [], None
    for ev in ask(c, "Count to three.", stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
        if ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    head = ["response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done",
            "response.output_item.done"]
    assert types[:4] == head
    assert types[-4:-1] == tail
    assert types[-1] == ("response.incomplete" if want.status == "incomplete" else "response.completed")
    assert set(types[4:-4]) <= {"response.output_text.delta"}
    assert "".join(deltas) == final.output_text == want.output_text
    assert final.usage.output_tokens == want.usage.output_tokens
    assert c.responses.retrieve(final.id).output_text == want.output_text


def test_logprobs(srv):
    # include "message.output_text.logprobs" with top_logprobs: each answer token with its
    # log-probability and alternatives, in the message part, the stream's deltas and retrieve.
    c = client(srv)
    kw = dict(include=["message.output_text.logprobs"], top_logprobs=2, max_output_tokens=6)
    r = ask(c, "Count to three.", **kw)
    assert r.top_logprobs == 2
    part = r.output[0].content[0]
    assert len(part.logprobs) == r.usage.output_tokens
    assert b"".join(bytes(lp.bytes) for lp in part.logprobs).decode("utf-8", "replace").startswith(part.text)
    for lp in part.logprobs:
        assert lp.logprob <= 0 and len(lp.top_logprobs) == 2
        assert lp.top_logprobs[0].logprob >= lp.top_logprobs[1].logprob
        assert lp.top_logprobs[0].token == lp.token  # temperature 0: the most likely token
    events = list(ask(c, "Count to three.", stream=True, **kw))
    streamed = [lp for e in events if e.type == "response.output_text.delta" for lp in e.logprobs]
    assert [lp.model_dump() for lp in streamed] == [lp.model_dump() for lp in part.logprobs]
    final = events[-1].response
    assert c.responses.retrieve(final.id).output[0].content[0].logprobs == final.output[0].content[0].logprobs
    assert ask(c, "Count to three.").output[0].content[0].logprobs == []  # not asked: none


def test_store_false_keeps_nothing(srv):
    c = client(srv)
    sessions = requests.get(f"{srv.base}/v1/sessions", timeout=10).json()["data"]
    r = ask(c, "Nothing to keep.", store=False)
    assert r.output_text is not None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        ask(c, "And then?", previous_response_id=r.id)
    assert requests.get(f"{srv.base}/v1/sessions", timeout=10).json()["data"] == sessions


def test_unknown_ids_are_404(srv):
    c = client(srv)
    for call in (lambda: c.responses.retrieve("resp_nope"), lambda: c.responses.delete("resp_nope"),
                 lambda: ask(c, "hi", previous_response_id="resp_nope")):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert "resp_nope" in str(e.value)


@pytest.mark.parametrize("body, needle", [
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "'tools[0].type'"),
    ({"input": "hi", "reasoning": {"effort": "low"}}, "'reasoning'"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, "'text.format.type'"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "'text.format.schema'"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}}}}, "text.format.schema: "),
    ({"input": "hi", "text": {"format": {"type": "json_object", "schema": {}}}}, "'text.format.schema'"),
    ({"input": "hi", "text": {"verbosity": "low"}}, "'text.verbosity'"),
    ({"input": "hi", "top_logprobs": 21}, "'top_logprobs'"),
    ({"input": "hi", "include": ["reasoning.encrypted_content"]}, "'include' value"),
    ({"input": "hi", "include": ["message.output_text.logprobs"], "tools": [{"type": "function", "name": "f"}]},
     "not supported with tools"),
    ({"input": "hi", "frobnicate": 1}, "'frobnicate'"),
    ({}, "'input' is required"),
    ({"input": 3}, "'input'"),
    ({"input": []}, "'input'"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input_image"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "call_id 'c'"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "last input message"),
    ({"input": "hi", "temperature": 9}, "temperature"),
    ({"input": "hi", "top_p": 2}, "top_p"),
    ({"input": "hi", "max_output_tokens": 0}, "max_tokens"),
    ({"input": "hi", "store": "yes"}, "'store'"),
    ({"input": "hi", "metadata": {"k": 1}}, "metadata"),
    ({"input": "hi", "previous_response_id": ""}, "previous_response_id"),
], ids=lambda v: None if isinstance(v, dict) else v)
def test_bad_fields_are_400(srv, body, needle):
    r = requests.post(f"{srv.base}/v1/responses", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_defaults_given_explicitly_are_accepted(srv):
    c = client(srv)
    r = ask(c, [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            tools=[], tool_choice="auto", truncation="disabled", text={"format": {"type": "text"}},
            store=False)
    assert r.output_text == ask(c, "hi", store=False).output_text


def chain(c, turns, **kw):
    """Runs `turns` (user texts) through previous_response_id; the responses."""
    out, prev = [], None
    for t in turns:
        extra = {"previous_response_id": prev} if prev else {}
        r = ask(c, t, **extra, **kw)
        out.append(r)
        prev = r.id
    return out


def whole(turns, answers):
    msgs = []
    for t, a in zip(turns, answers):
        msgs.append({"role": "user", "content": t})
        msgs.append({"role": "assistant", "content": a})
    return msgs[:-1]


TURNS = ["Hello there.", "What is the capital of France?", "And of Italy?",
         "Say something long, with\n\nblank lines.", "Thanks, bye."]


def test_chain_prefills_only_new_tokens_and_equals_the_whole_conversation(srv):
    c = client(srv)
    rs = []
    prefilled = []
    prev = None
    for t in TURNS:
        before = srv.metric(PROMPT)
        extra = {"previous_response_id": prev} if prev else {}
        r = ask(c, t, instructions="Answer briefly.", **extra)
        prefilled.append(srv.metric(PROMPT) - before)
        rs.append(r)
        prev = r.id
    answers = [r.output_text for r in rs]
    for k in range(1, len(TURNS)):
        u, p = rs[k].usage, rs[k - 1].usage
        # The earlier turns' state is carried: cached = what the previous state had read.
        assert u.input_tokens_details.cached_tokens > 0
        assert u.input_tokens_details.cached_tokens >= p.input_tokens - CHUNK
        new = u.input_tokens - u.input_tokens_details.cached_tokens
        # Prefilled: the new turn, the previous answer and at most a chunk left pending,
        # whatever the length of the history.
        assert new <= (u.input_tokens - p.input_tokens) + CHUNK
        assert prefilled[k] <= new + p.output_tokens + 2 * CHUNK
        assert rs[k].previous_response_id == rs[k - 1].id
    # The same conversation sent whole, in one call, gives the same tokens.
    for k in range(len(TURNS)):
        one = ask(c, whole(TURNS[:k + 1], answers[:k + 1]), instructions="Answer briefly.",
                  store=False)
        assert one.output_text == answers[k], f"turn {k}"
        assert one.usage.input_tokens == rs[k].usage.input_tokens, f"turn {k}"
        assert one.usage.input_tokens_details.cached_tokens == 0
        # And /v1/chat/completions over the same messages (the embedded model's byte
        # tokenizer has no token across the pieces' cuts; docs/API.md says when the world
        # tokenizer has).
        msgs = [{"role": "system", "content": "Answer briefly."}] + whole(TURNS[:k + 1], answers[:k + 1])
        chat = c.chat.completions.create(model="", messages=msgs, max_tokens=8, temperature=0.0)
        assert chat.choices[0].message.content == answers[k], f"turn {k}"
        assert chat.usage.prompt_tokens == rs[k].usage.input_tokens, f"turn {k}"


def test_chain_instructions_must_match(srv):
    c = client(srv)
    r = ask(c, "Hi.", instructions="Be kind.")
    assert ask(c, "Again.", previous_response_id=r.id, instructions="Be kind.").status != "failed"
    assert ask(c, "Again.", previous_response_id=r.id).instructions is None
    with pytest.raises(openai.BadRequestError) as e:
        ask(c, "Again.", previous_response_id=r.id, instructions="Be rude.")
    assert "instructions" in str(e.value)


def test_branches_from_one_response(srv):
    """Two continuations of one response: the earlier one stays retrievable and both
    branches equal their whole conversations."""
    c = client(srv)
    root = ask(c, "Pick a colour.")
    a = ask(c, "Why that one?", previous_response_id=root.id)
    b = ask(c, "Pick another.", previous_response_id=root.id)
    assert c.responses.retrieve(root.id).output_text == root.output_text
    for r, t in ((a, "Why that one?"), (b, "Pick another.")):
        one = ask(c, whole(["Pick a colour.", t], [root.output_text, r.output_text]), store=False)
        assert one.output_text == r.output_text


def test_dropped_state_is_reported_as_expired(srv):
    c = client(srv)
    r = ask(c, "Remember this.")
    # The state is a session: deleting it is what expiry or the budgets do.
    assert requests.delete(f"{srv.base}/v1/sessions/{r.id}", timeout=10).status_code == 200
    with pytest.raises(openai.NotFoundError) as e:
        ask(c, "What was it?", previous_response_id=r.id)
    assert "expired" in str(e.value)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.retrieve(r.id)
    assert "resp_" in str(e.value)


def test_chain_through_host_tier(make_server, srv):
    """States pushed out of the backend (a session budget of about two states) continue
    exactly, and the prefix cache changes nothing."""
    want = chain(client(srv), TURNS[:3])
    one = requests.get(f"{srv.base}/v1/sessions/{want[0].id}", timeout=10).json()["bytes"]
    # With the prefix cache as by default (the module's server runs without it).
    tiny = make_server("--prefill-chunk", str(CHUNK), "--session-memory-bytes", str(int(2.5 * one)))
    rs = chain(client(tiny), TURNS[:3])
    info = requests.get(f"{tiny.base}/v1/sessions/{rs[0].id}", timeout=10).json()
    assert info["tier"] == "host"
    assert [r.output_text for r in rs] == [r.output_text for r in want]
    assert [r.usage.model_dump() for r in rs] == [r.usage.model_dump() for r in want]
    assert c_retrieve(tiny, rs[0].id) == want[0].output_text


def c_retrieve(s, id):
    return client(s).responses.retrieve(id).output_text


def test_store_false_continuation_keeps_nothing_new(srv):
    c = client(srv)
    first = ask(c, "Start here.")
    stored = ask(c, "Go on.", previous_response_id=first.id)
    before = srv.metric(STORED)
    unstored = ask(c, "Go on.", previous_response_id=first.id, store=False)
    assert unstored.output_text == stored.output_text
    assert unstored.usage.model_dump() == stored.usage.model_dump()
    assert srv.metric(STORED) == before  # no working copy or state left behind
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unstored.id)


def test_client_gone_mid_stream_leaves_nothing_behind(make_server):
    s = make_server("--prefix-cache-bytes", "0")
    with requests.post(f"{s.base}/v1/responses", stream=True, timeout=60,
                       json={"input": "Write a very long story.", "max_output_tokens": 2000,
                             "stream": True}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith(b"event: response.output_text.delta"):
                break

    def settled():
        # Cancelled: nothing kept, no working copy left. (Had it ended before the client
        # left, it would be stored and retrievable.)
        if s.metric("rwkvx_requests_running") != 0:
            return False
        listed = requests.get(f"{s.base}/v1/sessions", timeout=10).json()["data"]
        if s.metric(STORED) != len(listed):
            return False
        return all(requests.get(f"{s.base}/v1/responses/{x['id']}", timeout=10).status_code == 200
                   for x in listed)

    wait_for(settled, "the cancelled response to end and leave nothing behind")
    assert s.alive()


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    population: int = pydantic.Field(ge=0, le=10**9)


def test_text_format_json_schema_and_json_object(srv):
    c = client(srv)
    for _ in range(3):  # temperature 1: the mask keeps any draw valid
        r = c.responses.parse(model="", input="Describe a city.", text_format=City, temperature=1.0,
                              max_output_tokens=200)
        assert r.status == "completed" and isinstance(r.output_parsed, City)
        assert r.text.format.type == "json_schema"
    with c.responses.stream(model="", input="Describe a city.", text_format=City, temperature=1.0,
                            max_output_tokens=200) as s:
        final = s.get_final_response()
    assert isinstance(final.output_parsed, City)
    r = c.responses.create(model="", input="Give me JSON.", text={"format": {"type": "json_object"}},
                           temperature=1.0, max_output_tokens=300)
    assert r.text.format.type == "json_object"
    if r.status == "completed":
        assert isinstance(json.loads(r.output_text), dict)
    # A structured turn continues like any other.
    nxt = c.responses.create(model="", input="Thanks.", previous_response_id=r.id, max_output_tokens=8,
                             temperature=0.0)
    assert nxt.status in ("completed", "incomplete") and nxt.text.format.type == "text"
