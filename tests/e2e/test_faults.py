"""Fault tests: each fault has an expected outcome, asserted here.

Client disconnect while queued / during prefill / during decode, deadline expiry,
SIGTERM with streams open, a corrupt checkpoint at start. Split by concept:
test_http_limits.py (slowloris, idle connections, the connection cap, header and body
floods), test_api_keys.py (unknown, revoked and rotated keys), test_memory_faults.py
(memory and session budgets, a lost backend); the session-directory faults live with
the session tests. docs/RELIABILITY.md lists them all. Every wait polls a condition
under a deadline (e2e_util.wait_for).
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


def test_disconnect_while_queued(make_server):
    srv = make_server("--max-sessions", "1", "--max-queue", "4", "--max-tokens", "1000000")
    a = raw_post(srv.http_port, {"prompt": "a", "max_tokens": 1000000, "stream": True,
                                 "ignore_eos": True})
    reader = keep_reading(a)  # A must stay running: never dropped as a slow client
    wait_streaming(reader, "request A to stream")
    # The gauges are set at the end of each loop iteration, after the step that streamed
    # A's first token: a scrape may come between the two.
    wait_for(lambda: srv.metric(RUNNING) == 1, "A to count as running")
    b = raw_post(srv.http_port, {"prompt": "b", "max_tokens": 4, "stream": True})
    wait_for(lambda: srv.metric(WAITING) == 1, "request B to wait")
    before = finished(srv, "cancelled")
    b.close()
    wait_for(lambda: srv.metric(WAITING) == 0, "the queued request to leave the queue")
    wait_for(lambda: finished(srv, "cancelled") == before + 1, "B to count as cancelled")
    assert srv.metric(RUNNING) == 1  # A is unaffected
    stop_reading(a, reader)
    wait_for(lambda: srv.metric(SESSIONS) == 0, "all sessions freed")
    complete(srv)


def test_disconnect_during_prefill(make_server):
    # 60000 prompt tokens (byte tokenizer) in chunks of 16: thousands of steps of prefill.
    srv = make_server("--prefill-chunk", "16", "--max-batch-tokens", "16",
                      "--max-prompt-tokens", "100000", "--max-body-bytes", "1000000")
    prompt = "p" * 60000
    s = raw_post(srv.http_port, {"prompt": prompt, "max_tokens": 8, "stream": True})
    wait_for(lambda: srv.metric(RUNNING) == 1 and srv.metric(PROMPT_TOKENS) > 0,
             "the prefill to start")
    before = finished(srv, "cancelled")
    s.close()
    wait_for(lambda: finished(srv, "cancelled") == before + 1, "the request to be cancelled")
    wait_for(lambda: srv.metric(SESSIONS) == 0, "its session to be freed")
    # It was still prefilling: not all of the prompt was fed and nothing was generated.
    assert srv.metric(PROMPT_TOKENS) < len(prompt)
    assert srv.metric(GEN_TOKENS) == 0
    assert srv.metric("rwkvx_session_state_bytes") == 0
    complete(srv)


def test_disconnect_during_decode_grpc(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--max-tokens", "1000000")
    with grpc.insecure_channel(srv.grpc_target) as ch:
        call = pbg.InferenceStub(ch).Generate(
            pb.GenerateRequest(text="decode", max_tokens=1000000, ignore_eos=True), timeout=120)
        got = 0
        for ev in call:
            got += len(ev.tokens)
            if got >= 3:
                break
        before = finished(srv, "cancelled")
        call.cancel()
    wait_for(lambda: finished(srv, "cancelled") == before + 1, "the RPC to be cancelled")
    wait_for(lambda: srv.metric(SESSIONS) == 0, "its session to be freed")
    complete(srv)


# ---- deadlines -----------------------------------------------------------------------

def test_request_timeout_ends_stream_with_timeout(make_server):
    srv = make_server("--request-timeout", "1", "--max-tokens", "1000000")
    with requests.post(srv.base + "/v1/completions", stream=True, timeout=120,
                       json={"prompt": "t", "max_tokens": 1000000, "stream": True,
                             "ignore_eos": True}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert finish_reasons(events) == ["timeout"]
    wait_for(lambda: srv.metric(SESSIONS) == 0, "its session to be freed")
    complete(srv)


def generate_codes(srv):
    """{gRPC code: count} of the Generate calls the server has ended."""
    pre = 'rwkvx_grpc_requests_total{code="'
    return {int(k[len(pre):].split('"')[0]): v for k, v in srv.metrics().items()
            if k.startswith(pre) and 'method="Generate"' in k}


def test_grpc_deadline_while_queued_and_running(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--max-sessions", "1", "--max-tokens", "1000000")
    with grpc.insecure_channel(srv.grpc_target) as ch:
        stub = pbg.InferenceStub(ch)
        # Running past its deadline: the RPC ends DEADLINE_EXCEEDED.
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(pb.GenerateRequest(text="r", max_tokens=1000000,
                                                  ignore_eos=True), timeout=1.0))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server's side of it: never OK (an OK that beat the client's own deadline timer
        # reached a busy client as a normal end), whoever noticed the deadline first.
        wait_for(lambda: sum(generate_codes(srv).values()) == 1, "the server to end the RPC")
        assert generate_codes(srv).get(0, 0) == 0
        # The expired RPC's session must be freed first: otherwise the RUNNING gauge can still
        # count it, and the queued request below could take the session ahead of A.
        wait_for(lambda: srv.metric(RUNNING) == 0 and srv.metric(SESSIONS) == 0,
                 "the expired RPC's session to be freed")
        # Queued past its deadline (the one session is busy). A is read continuously, so it
        # is never dropped as a slow client (which would free the session for the queued one).
        a = raw_post(srv.http_port, {"prompt": "a", "max_tokens": 1000000, "stream": True,
                                     "ignore_eos": True})
        reader = keep_reading(a)
        wait_streaming(reader, "request A to stream")
        wait_for(lambda: srv.metric(RUNNING) == 1, "A to count as running")  # gauges lag a step
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(pb.GenerateRequest(text="q", max_tokens=2), timeout=1.0))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: srv.metric(WAITING) == 0, "the expired request to leave the queue")
        wait_for(lambda: sum(generate_codes(srv).values()) == 2, "the server to end the RPC")
        assert generate_codes(srv).get(0, 0) == 0
        assert srv.metric(RUNNING) == 1  # A was running all along
        stop_reading(a, reader)
    wait_for(lambda: srv.metric(SESSIONS) == 0, "all sessions freed")
    complete(srv)


# ---- SIGTERM with many streams open --------------------------------------------------

def test_sigterm_with_streams_open(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--drain-grace", "2", "--max-tokens", "1000000")
    http_results, grpc_results = [], []
    started = threading.Semaphore(0)

    def http_stream():
        with requests.post(srv.base + "/v1/completions", stream=True, timeout=120,
                           json={"prompt": "h", "max_tokens": 1000000, "stream": True,
                                 "ignore_eos": True}) as r:
            started.release()
            http_results.append((r.status_code, sse_events(r)))

    def grpc_stream():
        with grpc.insecure_channel(srv.grpc_target) as ch:
            evs = []
            for i, ev in enumerate(pbg.InferenceStub(ch).Generate(
                    pb.GenerateRequest(text="g", max_tokens=1000000, ignore_eos=True),
                    timeout=120)):
                if i == 0:
                    started.release()
                evs.append(ev)
            grpc_results.append(evs)

    threads = [threading.Thread(target=http_stream) for _ in range(6)]
    threads += [threading.Thread(target=grpc_stream) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=60)
    srv.proc.send_signal(15)
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert srv.terminate() == 0
    assert len(http_results) == 6 and len(grpc_results) == 4
    for status, events in http_results:
        assert status == 200
        assert events[-1] == "[DONE]"
        assert finish_reasons(events) == ["shutdown"]
    for evs in grpc_results:  # the stream ends with OK and one final event
        assert [e.finish_reason for e in evs if e.finish_reason] == ["shutdown"]
        assert evs[-1].usage.completion_tokens == sum(len(e.tokens) for e in evs)


# ---- budgets running out -------------------------------------------------------------


CORRUPT = {
    "garbage.pth": os.urandom(4096),
    "truncated_zip.pth": b"PK\x03\x04" + b"\x00" * 100,
    "empty.safetensors": b"",
    "bad_header.safetensors": (1 << 40).to_bytes(8, "little") + b"{}",
    "bad_json.safetensors": (10).to_bytes(8, "little") + b"{not json}",
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_checkpoint_fails_clearly(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CORRUPT[name])
    p = subprocess.run([binary(), "serve", "--model", str(path), "--http-port", "0",
                        "--grpc-port", "-1"], capture_output=True, timeout=120)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode not in (0, None), out
    assert p.returncode > 0, f"killed by a signal ({p.returncode}):\n{out}"
    assert name in out, out  # the error names the file
    for marker in ("AddressSanitizer", "runtime error:", "ThreadSanitizer", "terminate called"):
        assert marker not in out, out


# ---- slowloris, idle connections, connection cap -------------------------------------
