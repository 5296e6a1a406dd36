"""logit_bias, min_tokens, stop_token_ids and echo with real clients (`openai` over HTTP,
grpcio over gRPC), against the embedded byte-level model (token id = byte + 1, end of
text = 0)."""
import grpc
import openai
import pytest

from e2e_util import model_id


def tid(ch):
    return ord(ch) + 1


def test_logit_bias_forces_and_bans(client):
    r = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=6, temperature=1.0,
                                  seed=1, logit_bias={str(tid("Z")): 100}, extra_body={"ignore_eos": True})
    assert r.choices[0].text == "ZZZZZZ"
    greedy = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=1, temperature=0,
                                       extra_body={"ignore_eos": True}).choices[0].text
    banned = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=1, temperature=0,
                                       logit_bias={str(tid(greedy)): -100}, extra_body={"ignore_eos": True})
    assert banned.choices[0].text != greedy
    chat = client.chat.completions.create(model=model_id(client), messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=4, logit_bias={str(tid("x")): 100},
                                          extra_body={"ignore_eos": True})
    assert chat.choices[0].message.content == "xxxx"


def test_logit_bias_validation(client):
    for bias, what in (({"65": 101}, "between -100 and 100"), ({"99999": 1}, "outside the vocabulary"),
                       ({"a": 1}, "token ids")):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=model_id(client), prompt="x", logit_bias=bias)
        assert what in str(e.value)


def test_stop_token_ids_and_min_tokens(client):
    q = tid("Q")
    base = dict(model=model_id(client), prompt="Hello", max_tokens=30, temperature=1.0, seed=2,
                logit_bias={str(q): 100})
    r = client.completions.create(extra_body={"stop_token_ids": [q]}, **base)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].text == ""
    assert r.usage.completion_tokens == 1
    r = client.completions.create(extra_body={"stop_token_ids": [q], "min_tokens": 5}, **base)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 6 and "Q" not in r.choices[0].text
    # End of text is held back too.
    eos = dict(model=model_id(client), prompt="Hello", max_tokens=30, temperature=1.0, seed=2,
               logit_bias={"0": 100})
    assert client.completions.create(**eos).usage.completion_tokens == 1
    r = client.completions.create(extra_body={"min_tokens": 3}, **eos)
    assert r.usage.completion_tokens == 4 and r.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id(client), prompt="x", max_tokens=4, extra_body={"min_tokens": 5})
    assert "min_tokens" in str(e.value)


def test_echo(client):
    r = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=5, temperature=0,
                                  echo=True, extra_body={"ignore_eos": True})
    plain = client.completions.create(model=model_id(client), prompt="Hello", max_tokens=5, temperature=0,
                                      extra_body={"ignore_eos": True})
    assert r.choices[0].text == "Hello" + plain.choices[0].text
    ids = client.completions.create(model=model_id(client), prompt=[tid(c) for c in "Hello"], max_tokens=5,
                                    temperature=0, echo=True, extra_body={"ignore_eos": True})
    assert ids.choices[0].text == r.choices[0].text
    chunks = list(client.completions.create(model=model_id(client), prompt="Hello", max_tokens=5,
                                            temperature=0, echo=True, stream=True,
                                            extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id(client), prompt="Hello", echo=True, logprobs=1)
    assert "echo" in str(e.value) and "logprobs" in str(e.value)


def test_grpc_output_controls(server, grpc_stubs):
    pb, pbg = grpc_stubs
    with grpc.insecure_channel(server.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)

        def run(**kw):
            events = list(stub.Generate(pb.GenerateRequest(text="Hello", sampling=pb.SamplingParams(
                temperature=1.0, seed=2), **kw), timeout=60))
            return "".join(e.text for e in events), events[-1]

        text, _ = run(max_tokens=5, ignore_eos=True, logit_bias={tid("Z"): 100.0})
        assert text == "ZZZZZ"
        q = tid("Q")
        text, last = run(max_tokens=30, logit_bias={q: 100.0}, stop_token_ids=[q], min_tokens=5)
        assert last.finish_reason == "stop" and last.usage.completion_tokens == 6 and "Q" not in text
        with pytest.raises(grpc.RpcError) as e:
            run(max_tokens=5, logit_bias={tid("Z"): 500.0})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "logit_bias" in e.value.details()
