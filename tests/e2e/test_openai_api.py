"""The official `openai` package against the server: completions and chat, streaming
and not, usage, n, logprobs, seed, stop."""
import openai
import pytest
import requests


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def model_id(client):
    return client.models.list().data[0].id


def test_models_lists_embedded_demo_model(client, server):
    models = client.models.list().data
    assert len(models) == 1
    assert models[0].id == "rwkvx-embedded-demo-bytes"  # the trained default (server/embedded/)
    raw = requests.get(server.base + "/v1/models", timeout=10).json()
    assert raw["data"][0]["random_weights"] is False
    assert "trained" in raw["data"][0]["description"]
    # vLLM's max_model_len: the server's prompt limit (the tokenize endpoint reports the same).
    limit = raw["data"][0]["max_model_len"]
    assert limit > 0 and requests.post(server.base + "/tokenize", json={"prompt": "x"}, timeout=10).json()[
        "max_model_len"] == limit


def test_version(server):
    v = requests.get(server.base + "/version", timeout=10).json()
    assert v["version"].count(".") == 2 and v["backend"] in ("cpu", "cuda")
    assert v["model"] == requests.get(server.base + "/v1/models", timeout=10).json()["data"][0]["id"]


def test_embedded_seed_serves_the_random_model(make_server):
    srv = make_server("--embedded-seed", "7")
    raw = requests.get(srv.base + "/v1/models", timeout=10).json()["data"][0]
    assert raw["id"] == "rwkvx-embedded-random-bytes"
    assert raw["random_weights"] is True
    assert "random" in raw["description"]


def test_completion_with_usage(client):
    r = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=8,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == 5  # byte tokenizer
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == 13


def test_completion_stream_matches_non_stream(client):
    args = dict(model=model_id(client), prompt="The sky is", max_tokens=12, temperature=0)
    full = client.completions.create(**args).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True},
                                            **args))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens == len("The sky is")
    assert chunks[-1].choices == []
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1


def test_chat_non_stream_and_stream(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    r = client.chat.completions.create(model=model_id(client), messages=msgs, max_tokens=10,
                                       temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    # "System: Be brief.\n\nUser: Hi there\n\nAssistant:" in bytes.
    assert r.usage.prompt_tokens == len("System: Be brief.\n\nUser: Hi there\n\nAssistant:")
    stream = client.chat.completions.create(model=model_id(client), messages=msgs, max_tokens=10,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_seeded_sampling_is_reproducible(client):
    args = dict(model=model_id(client), prompt="abc", max_tokens=16, temperature=1.0,
                top_p=0.9, seed=42, extra_body={"ignore_eos": True, "top_k": 50})
    a = client.completions.create(**args).choices[0].text
    b = client.completions.create(**args).choices[0].text
    assert a == b


def test_n_choices_and_penalties(client):
    r = client.completions.create(model=model_id(client), prompt="xyz", max_tokens=6, n=3,
                                  temperature=1.0, seed=7, presence_penalty=0.5,
                                  frequency_penalty=0.5, user="tester",
                                  extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 18


def test_logprobs(client):
    r = client.completions.create(model=model_id(client), prompt="hi", max_tokens=4,
                                  temperature=0, logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 4
    assert all(len(t) >= 1 for t in lp.top_logprobs)
    c = client.chat.completions.create(model=model_id(client),
                                       messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,
                                       extra_body={"ignore_eos": True})
    content = c.choices[0].logprobs.content
    assert len(content) == 4
    assert all(len(t.top_logprobs) == 2 for t in content)
    assert all(t.logprob <= 0 for t in content)


def test_stop_string(client):
    args = dict(model=model_id(client), prompt="Once", max_tokens=24, temperature=0,
                extra_body={"ignore_eos": True})
    full = client.completions.create(**args).choices[0].text
    stop = full[5:7]
    if not stop or "\ufffd" in stop:
        pytest.skip("greedy text has no clean stop candidate")
    r = client.completions.create(stop=[stop], **args)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[: full.find(stop)]


def test_n_choices_streaming(client):
    chunks = list(client.chat.completions.create(
        model=model_id(client), messages=[{"role": "user", "content": "two answers"}],
        max_tokens=5, n=2, temperature=1.0, seed=3, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}
    assert chunks[-1].usage.completion_tokens == 10
