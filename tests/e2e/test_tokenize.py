"""POST /tokenize and /detokenize in vLLM's form (docs/API.md "Tokenize"): a prompt or a
chat (rendered exactly as /v1/chat/completions renders it: the counts agree with the usage
the chat endpoint reports), token strings, the round trip, API keys, and bad requests
refused with the reason."""
import openai
import pytest
import requests

from e2e_util import model_id


def tok(srv, body, **kw):
    return requests.post(srv.base + "/tokenize", json=body, timeout=30, **kw)


def detok(srv, body, **kw):
    return requests.post(srv.base + "/detokenize", json=body, timeout=30, **kw)


def test_prompt_round_trip(server):
    text = "Hello, world! ünïcødé 你好"
    r = tok(server, {"prompt": text})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["count"] == len(j["tokens"]) > 0 and j["token_strs"] is None and j["max_model_len"] > 0
    assert detok(server, {"tokens": j["tokens"]}).json() == {"prompt": text}
    # llama.cpp's field name, the served model's id and add_special_tokens (no special tokens) give the same.
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)
    same = tok(server, {"content": text, "model": model_id(client), "add_special_tokens": True}).json()
    assert same["tokens"] == j["tokens"]
    # The completions endpoint reads the same tokens.
    c = client.completions.create(model=model_id(client), prompt=text, max_tokens=1)
    assert c.usage.prompt_tokens == j["count"]


def test_token_strs(server):
    j = tok(server, {"prompt": "ab é", "return_token_strs": True}).json()
    assert len(j["token_strs"]) == j["count"]
    # Each token's own bytes: a token holding part of a character shows U+FFFD.
    assert "".join(j["token_strs"]).replace("\ufffd", "") in ("ab é", "ab ")


def test_messages_are_the_chat_prompt(server):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    j = tok(server, {"messages": messages, "add_generation_prompt": True}).json()
    chat = client.chat.completions.create(model=model_id(client), messages=messages, max_tokens=1)
    assert chat.usage.prompt_tokens == j["count"]
    text = detok(server, {"tokens": j["tokens"]}).json()["prompt"]
    assert text.startswith("System: Be brief.") and text.endswith("Assistant:")
    # With tools the tools' system message is counted too, as the chat endpoint reads it.
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
    jt = tok(server, {"messages": messages, "tools": tools}).json()
    ct = client.chat.completions.create(model=model_id(client), messages=messages, tools=tools, max_tokens=1)
    assert ct.usage.prompt_tokens == jt["count"] > j["count"]


@pytest.mark.parametrize("path, body, needle", [
    ("/tokenize", {}, "'prompt' (a string) or 'messages'"),
    ("/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "give one of"),
    ("/tokenize", {"prompt": 3}, "'prompt' must be a string"),
    ("/tokenize", {"prompt": "x", "tools": []}, "go with 'messages'"),
    ("/tokenize", {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("/tokenize", {"prompt": "x", "add_generation_prompt": False}, "'add_generation_prompt'"),
    ("/tokenize", {"prompt": "x", "return_token_strs": "yes"}, "'return_token_strs'"),
    ("/tokenize", {"prompt": "x", "model": "other-model"}, "other-model"),
    ("/tokenize", {"prompt": "x", "frobnicate": 1}, "'frobnicate'"),
    ("/detokenize", {}, "'tokens' is required"),
    ("/detokenize", {"tokens": "1 2"}, "'tokens' must be an array"),
    ("/detokenize", {"tokens": [1.5]}, "integers"),
    ("/detokenize", {"tokens": [-1]}, "outside the vocabulary"),
    ("/detokenize", {"tokens": [10 ** 9]}, "outside the vocabulary"),
    ("/detokenize", {"tokens": [1], "skip_special_tokens": True}, "'skip_special_tokens'"),
], ids=lambda v: None if isinstance(v, (dict, str)) else v)
def test_bad_requests_are_400(server, path, body, needle):
    r = requests.post(server.base + path, json=body, timeout=30)
    assert r.status_code in (400, 404), r.text
    assert needle in r.json()["error"]["message"]
    r = requests.post(server.base + path, data=b"{not json", timeout=30)
    assert r.status_code == 400
    assert requests.get(server.base + path, timeout=30).status_code == 405


def test_api_key_is_required(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("rk-tok-1\n")
    srv = make_server("--api-key-file", str(keys))
    assert tok(srv, {"prompt": "x"}).status_code == 401
    assert detok(srv, {"tokens": [1]}).status_code == 401
    h = {"Authorization": "Bearer rk-tok-1"}
    assert tok(srv, {"prompt": "x"}, headers=h).status_code == 200
    assert detok(srv, {"tokens": [1]}, headers=h).status_code == 200
