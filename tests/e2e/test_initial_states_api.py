"""--initial-state NAME=PATH (a state-tuned RWKV state, RWKV-PEFT layout) through the real
clients: /v1/models lists it, a request picks it with `initial_state` (openai client's
extra_body, and gRPC GenerateRequest.initial_state) and gets the same tokens over both, the
state changes the output, the prefix cache keeps its checkpoints apart from the zero
state's, named and client-held sessions start from it, and bad names and bad files are
refused clearly. Numerical agreement with the
official package: tests/parity/test_initial_state.py."""
import json
import subprocess
import sys

import grpc
import openai
import pytest
import requests

from e2e_util import ROOT, binary

ORACLE = [sys.executable, str(ROOT / "tests" / "parity" / "oracle.py")]
SHAPE = {"vocab": 320, "n_embd": 64, "n_rwkv_layer": 2, "n_attn_layer": 1, "ffn_dim": 256,
         "rank_w": 8, "rank_a": 8, "rank_v": 4, "rank_g": 16}
PROMPT = "An initial state changes what comes next."


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("initial-state")
    model, state, bad = d / "m.pth", d / "tuned.pth", d / "bad.pth"
    subprocess.run(ORACLE + ["make", "--out", str(model), "--shape", json.dumps(SHAPE), "--seed", "3"],
                   check=True, timeout=300)
    subprocess.run(ORACLE + ["make-state", "--out", str(state), "--shape", json.dumps(SHAPE), "--seed", "4"],
                   check=True, timeout=300)
    wrong = dict(SHAPE, n_embd=128)  # [2, 64, 64] heads: the wrong shape for this model
    subprocess.run(ORACLE + ["make-state", "--out", str(bad), "--shape", json.dumps(wrong)], check=True,
                   timeout=300)
    return str(model), str(state), str(bad)


def serve(make_server, files, *flags):
    model, state, _ = files
    return make_server("--model", model, "--tokenizer", "bytes", "--initial-state", f"tuned={state}", *flags)


def greedy(srv, initial=None, prompt=PROMPT):
    c = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    extra = {"ignore_eos": True}
    if initial:
        extra["initial_state"] = initial
    r = c.completions.create(model=c.models.list().data[0].id, prompt=prompt, max_tokens=8,
                             temperature=0.0, logprobs=2, extra_body=extra)
    ch = r.choices[0]
    return ch.text, ch.logprobs.token_logprobs, r.usage.prompt_tokens_details.cached_tokens


def test_picked_by_name_over_http_and_grpc(make_server, files, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = serve(make_server, files)
    models = requests.get(srv.base + "/v1/models", timeout=30).json()["data"]
    assert models[0]["initial_states"] == ["tuned"]
    tuned, zero = greedy(srv, "tuned"), greedy(srv)
    assert tuned[1] != zero[1]  # the state is not ignored
    assert greedy(srv, "tuned")[:2] == tuned[:2]  # and deterministic (the cache may serve it)
    with grpc.insecure_channel(srv.grpc_target) as ch:
        events = list(pbg.InferenceStub(ch).Generate(
            pb.GenerateRequest(text=PROMPT, max_tokens=8, ignore_eos=True, initial_state="tuned",
                               sampling=pb.SamplingParams(temperature=0.0)), timeout=60))
    assert b"".join(t.token_bytes for e in events for t in e.tokens).decode("utf-8", "replace") == tuned[0]


def test_bad_names_and_combinations_are_refused(make_server, files, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = serve(make_server, files)
    r = requests.post(srv.base + "/v1/completions", timeout=30,
                      json={"prompt": "x", "max_tokens": 2, "initial_state": "nope"})
    assert r.status_code == 400
    assert "unknown initial_state 'nope'" in r.json()["error"]["message"] and "'tuned'" in r.text
    r = requests.post(srv.base + "/v1/completions", timeout=30,
                      json={"prompt": "x", "max_tokens": 2, "initial_state": 3})
    assert r.status_code == 400 and "initial_state" in r.json()["error"]["message"]
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        stub.CreateSession(pb.CreateSessionRequest(session_id="s"), timeout=30)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(pb.GenerateRequest(session_id="s", text="x", max_tokens=2,
                                                  initial_state="tuned"), timeout=60))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id" in e.value.details()


def test_prefix_cache_keeps_initial_states_apart(make_server, files):
    srv = serve(make_server, files, "--prefix-cache-bytes", str(1 << 28), "--prefix-cache-min-tokens", "4")
    cold = serve(make_server, files, "--prefix-cache-bytes", "0")
    # Past the first point of the prefill grid (128 tokens): the CUDA backend's cache keeps
    # only grid checkpoints (docs/PREFIX_CACHE.md), the CPU's the whole prompt.
    prompt = " ".join([PROMPT] * 4)
    gpu = requests.get(srv.base + "/v1/models", timeout=30).json()["data"][0]["backend"] != "cpu"
    served = len(prompt) // 128 * 128 if gpu else len(prompt)
    assert served > 0
    want_tuned, want_zero = greedy(cold, "tuned", prompt)[:2], greedy(cold, prompt=prompt)[:2]
    first = greedy(srv, "tuned", prompt)
    assert first[:2] == want_tuned and first[2] == 0
    zero = greedy(srv, prompt=prompt)  # the same prompt from zeros: the tuned checkpoint must not serve it
    assert zero[:2] == want_zero and zero[2] == 0
    again = greedy(srv, "tuned", prompt)  # its own checkpoint serves it
    assert again[:2] == want_tuned and again[2] == served


def test_a_bad_file_fails_start_up_naming_it(files, tmp_path):
    model, _, bad = files
    for spec, words in ((f"x={bad}", ["--initial-state x", "[2, 64, 64]"]),
                        (f"x={tmp_path / 'missing.pth'}", ["missing.pth"]),
                        ("no-path", ["NAME=PATH"])):
        r = subprocess.run([binary(), "serve", "--model", model, "--tokenizer", "bytes", "--http-port", "0",
                            "--grpc-port", "-1", "--initial-state", spec], capture_output=True, timeout=120)
        assert r.returncode != 0
        for w in words:
            assert w.encode() in r.stderr, r.stderr[-2000:]


def test_named_and_client_held_sessions_start_from_it(make_server, files, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = serve(make_server, files, "--prefix-cache-bytes", "0")
    want_text, want_lps, _ = greedy(srv, "tuned")
    body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0.0, "logprobs": 2, "ignore_eos": True}
    # HTTP: a named session from the state, the prompt generated from it.
    r = requests.post(srv.base + "/v1/sessions", json={"session_id": "h", "initial_state": "tuned"}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(srv.base + "/v1/sessions/h/completions", json=body, timeout=60).json()
    assert r["choices"][0]["text"] == want_text
    assert r["choices"][0]["logprobs"]["token_logprobs"] == pytest.approx(want_lps, abs=1e-4)
    # Its snapshot holds the state it reached: a restored copy continues like the original.
    snap = requests.get(srv.base + "/v1/sessions/h/snapshot", timeout=30).content
    assert requests.put(srv.base + "/v1/sessions/h2/snapshot", data=snap, timeout=30).status_code == 200
    more = dict(body, prompt=" More.")
    a = requests.post(srv.base + "/v1/sessions/h/completions", json=more, timeout=60).json()["choices"][0]["text"]
    b = requests.post(srv.base + "/v1/sessions/h2/completions", json=more, timeout=60).json()["choices"][0]["text"]
    assert a == b
    # Client-held state without a snapshot starts from it; with a snapshot it is refused.
    r = requests.post(srv.base + "/v1/snapshot/completions", json=dict(body, initial_state="tuned"), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == want_text
    r = requests.post(srv.base + "/v1/snapshot/completions", timeout=60,
                      json=dict(body, initial_state="tuned", snapshot=r.json()["snapshot"]))
    assert r.status_code == 400 and "snapshot" in r.json()["error"]["message"]
    r = requests.post(srv.base + "/v1/sessions", json={"initial_state": "nope"}, timeout=30)
    assert r.status_code == 400 and "unknown initial_state 'nope'" in r.text
    r = requests.post(srv.base + "/v1/sessions", json={"initial_state": 1}, timeout=30)
    assert r.status_code == 400 and "initial_state" in r.text
    # gRPC: the same through CreateSession and through return_snapshot.
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        stub.CreateSession(pb.CreateSessionRequest(session_id="g", initial_state="tuned"), timeout=30)
        s = pb.SamplingParams(temperature=0.0)
        for req in (pb.GenerateRequest(session_id="g", text=PROMPT, max_tokens=8, ignore_eos=True, sampling=s),
                    pb.GenerateRequest(text=PROMPT, max_tokens=8, ignore_eos=True, sampling=s,
                                       initial_state="tuned", return_snapshot=True)):
            events = list(stub.Generate(req, timeout=60))
            got = b"".join(t.token_bytes for e in events for t in e.tokens).decode("utf-8", "replace")
            assert got == want_text
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateSession(pb.CreateSessionRequest(initial_state="nope"), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.value.details()
