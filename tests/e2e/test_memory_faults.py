"""Memory and backend faults: memory and stored-session budgets running out, many long
streams under a small budget (never a mid-stream failure), a lost backend (split from
test_faults.py; docs/MEMORY.md, docs/RELIABILITY.md).
"""
import json
import os
import signal
import socket
import subprocess
import threading

import grpc
import pytest
import requests

from e2e_util import binary, wait_for
from fault_util import *  # noqa: E402,F401,F403


def test_memory_budget_exhausted_gives_429(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--memory-budget-bytes", "1")  # smaller than one session
    r = requests.post(srv.base + "/v1/completions", json={"prompt": "x", "max_tokens": 2},
                      timeout=60)
    assert r.status_code == 429, r.text
    assert r.headers.get("Retry-After")
    assert r.json()["error"]["type"] == "rate_limit_error"
    with grpc.insecure_channel(srv.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as e:
            list(pbg.InferenceStub(ch).Generate(pb.GenerateRequest(text="x", max_tokens=2),
                                                timeout=60))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert srv.alive()
    assert srv.metric(SESSIONS) == 0


def test_stored_session_budget_exhausted(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--max-stored-sessions", "2")
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        stub.CreateSession(pb.CreateSessionRequest(session_id="s1"), timeout=30)
        stub.CreateSession(pb.CreateSessionRequest(session_id="s2"), timeout=30)
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateSession(pb.CreateSessionRequest(session_id="s3"), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stub.DeleteSession(pb.DeleteSessionRequest(session_id="s1"), timeout=30)
        stub.CreateSession(pb.CreateSessionRequest(session_id="s3"), timeout=30)
    complete(srv)


# ---- corrupt checkpoint at start -----------------------------------------------------


# ---- memory reservations (docs/MEMORY.md) ---------------------------------------------

def stream_outcome(srv, prompt, max_tokens):
    """One SSE completion: ('refused', status) when refused before any byte, else
    ('streamed', finish reasons, error events, tokens)."""
    with requests.post(srv.base + "/v1/completions", stream=True, timeout=300,
                       json={"prompt": prompt, "max_tokens": max_tokens, "stream": True,
                             "ignore_eos": True}) as r:
        if r.status_code != 200:
            return ("refused", r.status_code, r.json())
        events = sse_events(r)
    errors = [e for e in events if e != "[DONE]" and "error" in e]
    text = "".join(e["choices"][0].get("text", "") for e in events
                   if e != "[DONE]" and e.get("choices"))
    return ("streamed", finish_reasons(events), errors, text)


def test_small_memory_budget_never_fails_a_started_stream(make_server):
    # The embedded model's session of 320 tokens reserves ~1.6 MB: about 7 fit in 12 MB.
    # 32 long streams at once: the rest wait for room, none fails mid-stream. Four more ask
    # for more than the whole budget (10000 tokens: ~40 MB on the CPU, ~20 MB with the CUDA
    # backend's fp16 KV): refused with 429 before their first byte.
    srv = make_server("--memory-budget-bytes", "12000000", "--max-tokens", "100000")
    results = [None] * 36
    def run(i):
        big = i >= 32
        results[i] = stream_outcome(srv, f"stream {i}: ", 10000 if big else 300)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(36)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
        assert not t.is_alive()
    refused = [r for r in results if r[0] == "refused"]
    streamed = [r for r in results if r[0] == "streamed"]
    for r in refused:
        assert r[1] == 429 and r[2]["error"]["type"] == "rate_limit_error", r
    assert all(r[0] == "refused" for r in results[32:])  # never fits: refused at once
    assert len(refused) == 4, refused  # everything that could fit ran
    for r in streamed:
        assert r[2] == [], r[2]  # no mid-stream error
        assert r[1] == ["length"], r[1]
    assert len(streamed) == 32
    assert srv.metric('rwkvx_requests_finished_total{finish_reason="error"}') == 0
    wait_for(lambda: srv.metric(SESSIONS) == 0, "all sessions freed")


# ---- a lost backend ---------------------------------------------------------------------

def test_lost_backend_fails_fast_saves_sessions_and_exits_nonzero(make_server, grpc_stubs,
                                                                  tmp_path):
    """--testing-fail-step-after: the 3rd step with every slot busy fails as a lost device.
    In-flight streams end 503 / UNAVAILABLE, /ready and gRPC health go not-serving, the idle
    named session is saved (held open by the write gate so the not-ready state can be seen),
    the process exits non-zero, and the session loads on a restart."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    pb, pbg = grpc_stubs
    d = str(tmp_path / "sessions")
    gate = tmp_path / "gate"
    srv = make_server("--session-dir", d, "--max-sessions", "3", "--max-tokens", "1000000",
                      "--testing-fail-step-after", "3", "--testing-session-write-gate", str(gate))
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        stub.CreateSession(pb.CreateSessionRequest(session_id="keep", text="kept"), timeout=30)
        list(stub.Generate(pb.GenerateRequest(session_id="keep", text=" state", max_tokens=4),
                           timeout=60))
        kept = stub.GetSession(pb.GetSessionRequest(session_id="keep"), timeout=30)
        assert requests.get(srv.base + "/ready", timeout=10).status_code == 200
        gate.write_text("hold")  # the save at exit waits while this exists
        sse, grpc_err = [], []

        def http_stream():
            sse.append(stream_outcome(srv, "h", 1000000))

        def grpc_stream():
            try:
                list(stub.Generate(pb.GenerateRequest(text="g", max_tokens=1000000,
                                                      ignore_eos=True), timeout=120))
                grpc_err.append(None)
            except grpc.RpcError as e:
                grpc_err.append(e.code())
        threads = [threading.Thread(target=http_stream) for _ in range(2)]
        threads.append(threading.Thread(target=grpc_stream))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive()
        assert grpc_err == [grpc.StatusCode.UNAVAILABLE]
        for kind, reasons, errors, _ in sse:
            assert kind == "streamed" and reasons == []
            assert [e["error"]["code"] for e in errors] == ["unavailable"], errors
        assert srv.alive()  # held by the gate
        r = requests.get(srv.base + "/ready", timeout=10)
        assert r.status_code == 503
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    gate.unlink()
    srv.proc.wait(timeout=60)
    assert srv.proc.returncode == 3, srv.log_text()[-3000:]
    assert "backend lost" in srv.log_text()
    srv2 = make_server("--session-dir", d)
    with grpc.insecure_channel(srv2.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        again = stub.GetSession(pb.GetSessionRequest(session_id="keep"), timeout=30)
        assert again.tokens_seen + again.pending_tokens == kept.tokens_seen + kept.pending_tokens
        evs = list(stub.Generate(pb.GenerateRequest(session_id="keep", text="!", max_tokens=2),
                                 timeout=60))
        assert sum(len(e.tokens) for e in evs) == 2
