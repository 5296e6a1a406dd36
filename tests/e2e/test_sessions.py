"""The session API (docs/SESSIONS.md) against the real server: HTTP (requests, openai) and
gRPC (grpcio). Resumed, forked, restored, client-held and reloaded-after-restart sessions
must give exactly the logprobs (greedy tokens with top_logprobs) of a run of the same
calls on a session that was never interrupted; bad snapshots are refused with a reason.
"""
import base64
import os
import signal
import struct
import subprocess
import threading
import zlib

import grpc
import openai
import pytest
import requests

from e2e_util import Server, wait_for
from session_util import GREEDY, SEED, Http, ids, reference  # noqa: E402,F401


@pytest.fixture(scope="module")
def srv():
    s = Server(*SEED)
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(srv):
    return Http(srv)


def test_create_get_list_append_delete(srv, api):
    s = api.create("life-1", prompt="Hello")
    assert s["id"] == "life-1" and s["tokens"] == 5 and s["pending_tokens"] == 5
    assert s["bytes"] > 0 and not s["busy"]
    r = api.append("life-1", " world")
    assert r.status_code == 200 and r.json()["tokens"] == 11
    assert api.append("life-1", [1, 2, 3]).json()["tokens"] == 14
    assert "life-1" in api.list()
    auto = api.create()
    assert auto["id"].startswith("sess-")
    assert api.create("life-1", ok=False).status_code == 409
    assert api.create("bad/name", ok=False).status_code in (400, 404)
    assert api.create("bad name!", ok=False).status_code == 400
    assert api.append("life-1", [99999]).status_code == 400
    assert api.delete("life-1").status_code == 200
    assert api.delete(auto["id"]).status_code == 200
    for r in (api.get("life-1"), api.delete("life-1"), api.append("life-1", "x"),
              api.snapshot("life-1"), api.fork("life-1", "x")):
        assert r.status_code == 404, r.text
        assert "life-1" in r.json()["error"]["message"]
    assert "life-1" not in api.list()


def test_session_completion_equals_a_cold_completion(srv, api):
    """create(prompt) + append + completion(prompt) feeds exactly the tokens of one cold
    /v1/completions over their concatenation, in the same chunks: the same logprobs."""
    api.create("cold-1", prompt="The quick ")
    api.append("cold-1", "brown ")
    got = api.complete("cold-1", "fox", n=8)
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="none")
    cold = client.completions.create(model="rwkvx-embedded-random-bytes", prompt="The quick brown fox",
                                     max_tokens=8, temperature=0, logprobs=5,
                                     extra_body={"ignore_eos": True})
    assert got["tokens"] == cold.choices[0].logprobs.tokens
    assert got["token_logprobs"] == cold.choices[0].logprobs.token_logprobs
    assert got["top_logprobs"] == cold.choices[0].logprobs.top_logprobs
    api.delete("cold-1")


def test_create_and_append_prefill_in_chunks(make_server):
    """With --prefill-chunk 8, create and append feed every whole chunk but the last at
    once (the session holds the state, few tokens stay pending) and the result is still
    exactly a cold completion over everything."""
    s = make_server(*SEED, "--prefill-chunk", "8")
    h = Http(s)
    first = h.create("pf", prompt="x" * 30)
    assert first["tokens_seen"] == 24 and first["pending_tokens"] == 6
    r = h.append("pf", "y" * 20).json()
    assert r["tokens_seen"] == 48 and r["pending_tokens"] == 2 and not r["busy"]
    got = h.complete("pf", "z", n=8)
    client = openai.OpenAI(base_url=s.base + "/v1", api_key="none")
    cold = client.completions.create(model="rwkvx-embedded-random-bytes", prompt="x" * 30 + "y" * 20 + "z",
                                     max_tokens=8, temperature=0, logprobs=5,
                                     extra_body={"ignore_eos": True})
    assert got["token_logprobs"] == cold.choices[0].logprobs.token_logprobs
    assert got["top_logprobs"] == cold.choices[0].logprobs.top_logprobs


def test_resumed_forked_restored_equal_uninterrupted(srv, api):
    calls = ["Once upon", " a time", " there was", " a cat"]
    ref = reference(api, "ref-1", calls)
    api.create("a", prompt=calls[0])
    assert api.complete("a", calls[1]) == ref[0]
    snap = api.snapshot("a")
    assert snap.status_code == 200
    assert snap.headers["Content-Type"] == "application/octet-stream"
    assert snap.content[:8] == b"RWKVXSS\0"
    assert api.fork("a", "a-fork").status_code == 200
    assert api.restore("a-restored", snap.content).status_code == 200
    assert api.restore("a-restored", snap.content).status_code == 409
    for name in ("a", "a-fork", "a-restored"):
        assert api.complete(name, calls[2]) == ref[1], name
    # The fork and the original diverge independently and stay exact.
    assert api.complete("a-fork", calls[3]) == ref[2]
    assert api.complete("a", calls[3]) == ref[2]
    for name in ("a", "a-fork", "a-restored"):
        api.delete(name)


def test_streaming_session_completion(srv, api):
    api.create("stream-1", prompt="abc")
    r = requests.post(f"{api.base}/stream-1/completions", stream=True, timeout=60,
                      json={"prompt": "d", "max_tokens": 5, "stream": True, **GREEDY})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    lines = [l for l in r.iter_lines() if l.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    assert api.get("stream-1").json()["tokens"] == 4 + 5
    api.delete("stream-1")


def test_busy_session_is_refused(srv, api):
    api.create("busy-1", prompt="x")
    resp = requests.post(f"{api.base}/busy-1/completions", stream=True, timeout=120,
                         json={"prompt": "y", "max_tokens": 4000, "stream": True,
                               "temperature": 0, "ignore_eos": True})
    try:
        wait_for(lambda: api.get("busy-1").json()["busy"], "the session to be busy")
        for r in (api.snapshot("busy-1"), api.fork("busy-1", "busy-2"), api.append("busy-1", "z"),
                  api.delete("busy-1")):
            assert r.status_code == 409, r.text
            assert "in use" in r.json()["error"]["message"]
    finally:
        resp.close()
    wait_for(lambda: not api.get("busy-1").json()["busy"], "the session to be released")
    assert api.delete("busy-1").status_code == 200


def test_client_held_state_http(srv, api):
    calls = ["Client", " held", " state"]
    ref = reference(api, "ref-ch", calls)
    url = srv.base + "/v1/snapshot/completions"
    # No snapshot: a fresh state; calls[0] + calls[1] as one prompt equals create+complete.
    r = requests.post(url, json={"prompt": calls[0] + calls[1], "max_tokens": 6, **GREEDY}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["logprobs"] == ref[0]
    snap = base64.b64decode(body["snapshot"])
    r = requests.post(url, json={"prompt": calls[2], "max_tokens": 6, "snapshot": body["snapshot"],
                                 **GREEDY}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] == ref[1]
    # The ephemeral sessions are gone.
    assert not [n for n in api.list() if n.startswith("client-state-")]
    # And the same snapshot restores into a named session.
    assert api.restore("from-client", snap).status_code == 200
    assert api.complete("from-client", calls[2]) == ref[1]
    api.delete("from-client")
    r = requests.post(url, json={"prompt": "x", "snapshot": "%%%"}, timeout=30)
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]


def fix_crc(b):
    return b[:-4] + struct.pack("<I", zlib.crc32(b[:-4]) & 0xFFFFFFFF)


def bad_snapshots(good, foreign):
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0x40
    version = bytearray(good[:-4])
    version[8:12] = struct.pack("<I", 99)
    return [("damaged", bytes(corrupt), "checksum"),
            ("truncated", good[: len(good) - 1000], "truncated"),
            ("wrong model", foreign, "another model"),
            ("wrong version", fix_crc(bytes(version) + b"\0\0\0\0"), "version 99"),
            ("not a snapshot", b"hello world, not a snapshot at all", "not a rwkvx session snapshot")]


@pytest.fixture(scope="module")
def foreign_snapshot():
    other = Server("--embedded-seed", "8")
    try:
        h = Http(other)
        h.create("f", prompt="foreign")
        return h.snapshot("f").content
    finally:
        other.close()


def test_bad_snapshots_refused_http(srv, api, foreign_snapshot):
    api.create("good", prompt="good")
    good = api.snapshot("good").content
    for what, data, reason in bad_snapshots(good, foreign_snapshot):
        r = api.restore("bad-1", data)
        assert r.status_code == 400, (what, r.text)
        assert reason in r.json()["error"]["message"], (what, r.text)
        r = requests.post(srv.base + "/v1/snapshot/completions", timeout=30,
                          json={"prompt": "x", "snapshot": base64.b64encode(data).decode()})
        assert r.status_code == 400 and reason in r.json()["error"]["message"], what
    assert "bad-1" not in api.list()
    api.delete("good")


@pytest.fixture(scope="module")
def stub(srv, grpc_stubs):
    _, pbg = grpc_stubs
    ch = grpc.insecure_channel(srv.grpc_target, options=[
        ("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)])
    yield pbg.InferenceStub(ch)
    ch.close()


def ggen(stub, pb, **kw):
    req = pb.GenerateRequest(max_tokens=6, ignore_eos=True, logprobs=True, top_logprobs=5,
                             sampling=pb.SamplingParams(temperature=0.0), **kw)
    events = list(stub.Generate(req, timeout=60))
    toks = [(t.token_id, t.logprob, [(a.token_id, a.logprob) for a in t.top_logprobs])
            for e in events for t in e.tokens]
    return toks, events[-1]


def test_grpc_session_api(srv, stub, grpc_stubs):
    pb, _ = grpc_stubs
    T = pb.TokenIds
    calls = [ids("gRPC sess"), ids("ion one"), ids(" two"), ids(" three")]
    stub.CreateSession(pb.CreateSessionRequest(session_id="g-ref", token_ids=T(ids=calls[0])), timeout=10)
    ref = [ggen(stub, pb, session_id="g-ref", token_ids=T(ids=c))[0] for c in calls[1:]]
    s = stub.CreateSession(pb.CreateSessionRequest(session_id="g-a", text="gRPC sess"), timeout=10)
    assert s.pending_tokens == len(calls[0]) and s.tier == "backend"
    assert ggen(stub, pb, session_id="g-a", token_ids=T(ids=calls[1]))[0] == ref[0]
    snap = stub.SnapshotSession(pb.SnapshotSessionRequest(session_id="g-a"), timeout=30).snapshot
    assert snap[:8] == b"RWKVXSS\0"
    f = stub.ForkSession(pb.ForkSessionRequest(session_id="g-a", new_session_id="g-fork"), timeout=10)
    assert f.session_id == "g-fork"
    r = stub.RestoreSession(pb.RestoreSessionRequest(session_id="g-rest", snapshot=snap), timeout=30)
    assert r.tokens_seen + r.pending_tokens == s.pending_tokens + len(calls[1]) + 6
    for name in ("g-a", "g-fork", "g-rest"):
        assert ggen(stub, pb, session_id=name, token_ids=T(ids=calls[2]))[0] == ref[1], name
    # Append without generating, then generate with an empty prompt.
    stub.AppendSession(pb.AppendSessionRequest(session_id="g-a", token_ids=T(ids=calls[3])), timeout=10)
    assert ggen(stub, pb, session_id="g-a", text="")[0] == ref[2]
    listed = {x.session_id for x in stub.ListSessions(pb.ListSessionsRequest(), timeout=10).sessions}
    assert {"g-ref", "g-a", "g-fork", "g-rest"} <= listed
    # Client-held state: the snapshot rides on the request and comes back on the last event.
    toks, last = ggen(stub, pb, token_ids=T(ids=calls[0] + calls[1]), return_snapshot=True)
    assert toks == ref[0] and last.snapshot[:8] == b"RWKVXSS\0"
    toks, last2 = ggen(stub, pb, token_ids=T(ids=calls[2]), snapshot=last.snapshot)
    assert toks == ref[1] and len(last2.snapshot) > 0
    with pytest.raises(grpc.RpcError) as e:
        ggen(stub, pb, token_ids=T(ids=calls[2]), snapshot=last.snapshot, session_id="g-a")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for code, rpc, req in [
            (grpc.StatusCode.NOT_FOUND, stub.SnapshotSession, pb.SnapshotSessionRequest(session_id="nope")),
            (grpc.StatusCode.NOT_FOUND, stub.ForkSession, pb.ForkSessionRequest(session_id="nope")),
            (grpc.StatusCode.NOT_FOUND, stub.AppendSession, pb.AppendSessionRequest(session_id="nope", text="x")),
            (grpc.StatusCode.ALREADY_EXISTS, stub.RestoreSession,
             pb.RestoreSessionRequest(session_id="g-a", snapshot=snap)),
            (grpc.StatusCode.INVALID_ARGUMENT, stub.CreateSession, pb.CreateSessionRequest(session_id="a b"))]:
        with pytest.raises(grpc.RpcError) as e:
            rpc(req, timeout=10)
        assert e.value.code() == code, req
    for name in ("g-ref", "g-a", "g-fork", "g-rest"):
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=name), timeout=10)


def test_bad_snapshots_refused_grpc(srv, stub, grpc_stubs, foreign_snapshot):
    pb, _ = grpc_stubs
    stub.CreateSession(pb.CreateSessionRequest(session_id="g-good", text="good"), timeout=10)
    good = stub.SnapshotSession(pb.SnapshotSessionRequest(session_id="g-good"), timeout=30).snapshot
    for what, data, reason in bad_snapshots(good, foreign_snapshot):
        with pytest.raises(grpc.RpcError) as e:
            stub.RestoreSession(pb.RestoreSessionRequest(session_id="g-bad", snapshot=data), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert reason in e.value.details(), (what, e.value.details())
        with pytest.raises(grpc.RpcError) as e:
            ggen(stub, pb, text="x", snapshot=data)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
    stub.DeleteSession(pb.DeleteSessionRequest(session_id="g-good"), timeout=10)


def test_snapshot_upload_limit(make_server):
    s = make_server(*SEED, "--max-snapshot-bytes", "1000")
    h = Http(s)
    h.create("big", prompt="x")
    data = h.snapshot("big").content
    assert len(data) > 1000
    r = h.restore("big-2", data)
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]


# ---- persistence -------------------------------------------------------------------------
