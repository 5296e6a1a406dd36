"""Fault tests (issue 8): each fault has an expected outcome, asserted here.

Client disconnect while queued / during prefill / during decode, deadline expiry,
SIGTERM with streams open, memory and session budgets running out, a corrupt checkpoint
at start, slowloris and idle connections, the connection cap, header and body floods,
unknown or revoked API keys (and no key in the log). The session-directory faults
(full / read-only --session-dir) live with the session tests. docs/RELIABILITY.md lists
them all. Every wait polls a condition under a deadline (e2e_util.wait_for).
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

RUNNING = "rwkvx_requests_running"
WAITING = "rwkvx_requests_waiting"
SESSIONS = "rwkvx_sessions_active"
PROMPT_TOKENS = "rwkvx_prompt_tokens_total"
GEN_TOKENS = "rwkvx_generation_tokens_total"


def finished(srv, reason):
    return srv.metric(f'rwkvx_requests_finished_total{{finish_reason="{reason}"}}')


def complete(srv, prompt="ok", max_tokens=2):
    r = requests.post(srv.base + "/v1/completions",
                      json={"prompt": prompt, "max_tokens": max_tokens}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def raw_post(port, body, path="/v1/completions", extra_headers=b""):
    """Sends one request on a raw socket (no reading); returns the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n" + extra_headers +
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s


def keep_reading(s):
    """Reads `s` on a thread until it is closed, so a long stream is never dropped as a slow
    client (which would free its session). Close the socket with shutdown() + close().
    The thread's `streaming` event is set once the first SSE data line has arrived: the
    request then holds its session and is decoding (the RUNNING gauge alone can still count
    an earlier request that is being torn down)."""
    streaming = threading.Event()

    def drain():
        seen = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                if not streaming.is_set():
                    seen = (seen + chunk)[-4096:]
                    if b"data:" in seen:
                        streaming.set()
        except OSError:
            pass

    t = threading.Thread(target=drain, daemon=True)
    t.streaming = streaming
    t.start()
    return t


def wait_streaming(reader, what):
    wait_for(reader.streaming.is_set, what)


def stop_reading(s, t):
    s.shutdown(socket.SHUT_RDWR)
    s.close()
    t.join(timeout=60)


def read_until_closed(s, limit=1 << 22):
    """Reads until the peer closes (b'' or a reset); returns the bytes read."""
    out = b""
    try:
        while len(out) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    return out


def sse_events(resp):
    """Parsed SSE payloads of a streaming requests.Response (the last is '[DONE]')."""
    out = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            d = line[6:].decode()
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


def finish_reasons(events):
    return [e["choices"][0]["finish_reason"] for e in events
            if e != "[DONE]" and e.get("choices") and e["choices"][0].get("finish_reason")]


# ---- client disconnect at every phase ------------------------------------------------

def test_disconnect_while_queued(make_server):
    srv = make_server("--max-sessions", "1", "--max-queue", "4", "--max-tokens", "1000000")
    a = raw_post(srv.http_port, {"prompt": "a", "max_tokens": 1000000, "stream": True,
                                 "ignore_eos": True})
    reader = keep_reading(a)  # A must stay running: never dropped as a slow client
    wait_streaming(reader, "request A to stream")
    assert srv.metric(RUNNING) == 1
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
        assert srv.metric(RUNNING) == 1
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(pb.GenerateRequest(text="q", max_tokens=2), timeout=1.0))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: srv.metric(WAITING) == 0, "the expired request to leave the queue")
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

def test_slowloris_is_dropped_and_others_are_served(make_server):
    srv = make_server("--http-read-timeout", "2")
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    state = {"closed": False, "sent": 0}

    def trickle():
        """One more header byte per poll; True once the server has closed."""
        try:
            s.sendall(b"X")
            state["sent"] += 1
            s.settimeout(0.2)
            if s.recv(1024) == b"":
                state["closed"] = True
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            state["closed"] = True
        return state["closed"]

    complete(srv)  # the server serves others while the slow header trickles in
    wait_for(trickle, "the slowloris connection to be dropped", interval=0.0)
    assert state["sent"] > 1
    s.close()
    complete(srv)


def test_idle_connection_is_closed(make_server):
    srv = make_server("--http-idle-timeout", "1")
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
    assert read_until_closed(s) == b""  # never sent anything: closed without a response
    s.close()
    # A keep-alive connection that goes idle after a request is closed too.
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"status":"ok"}')
    s.close()


def test_connection_cap(make_server):
    srv = make_server("--http-max-connections", "4")
    held = [socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
            for _ in range(4)]
    for h in held:  # each is really open and served
        h.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert h.recv(1024).startswith(b"HTTP/1.1 200")
    extra = socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
    data = read_until_closed(extra)
    assert data.startswith(b"HTTP/1.1 503"), data
    assert b"too_many_connections" in data
    extra.close()
    for h in held:
        h.close()
    wait_for(lambda: requests.get(srv.base + "/health", timeout=10).status_code == 200,
             "a new connection to be accepted once the others closed")


# ---- header and body floods ----------------------------------------------------------

def test_header_flood_many_headers_431_and_closed(server):
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    headers = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


def test_endless_header_line_431_and_closed(server):
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: ")
    try:
        for _ in range(64):  # 4 MiB of one header value, never terminated
            s.sendall(b"a" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_until_closed(s)
    s.close()
    assert data == b"" or data.startswith(b"HTTP/1.1 431"), data[:200]
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_flood_413_and_closed(server, chunked):
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
             else b"Content-Length: 104857600\r\n\r\n")
    piece = b"10000\r\n" + b"a" * 65536 + b"\r\n" if chunked else b"a" * 65536
    try:
        s.sendall(head)
        for _ in range(64):  # 4 MiB, past the 1 MiB default body limit
            s.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_until_closed(s)
    s.close()
    # The 413 may be lost to a reset when the server closes with unread bytes pending.
    assert data == b"" or data.startswith(b"HTTP/1.1 413"), data[:200]
    assert requests.get(server.base + "/health", timeout=10).status_code == 200
    r = requests.post(server.base + "/v1/completions", json={"prompt": "x", "max_tokens": 1},
                      timeout=60)
    assert r.status_code == 200


def test_body_flood_gets_413_when_the_client_waits(server):
    """With Expect: 100-continue the server answers 413 before any body byte is sent."""
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: 104857600\r\n\r\n")
    data = read_until_closed(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


# ---- API keys ------------------------------------------------------------------------

KEY_A = "rk-live-ALPHA-7f3c9e1b"
KEY_B = "rk-live-BRAVO-0d2a4c6e"
GUESS = "rk-live-GUESS-1234abcd"


def auth_post(srv, key):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(srv.base + "/v1/completions", json={"prompt": "x", "max_tokens": 2},
                         headers=h, timeout=60)


def auth_grpc_code(srv, grpc_stubs, key):
    pb, pbg = grpc_stubs
    md = [("authorization", f"Bearer {key}")] if key else []
    with grpc.insecure_channel(srv.grpc_target) as ch:
        try:
            list(pbg.InferenceStub(ch).Generate(pb.GenerateRequest(text="x", max_tokens=2),
                                                metadata=md, timeout=60))
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def test_unknown_and_revoked_api_keys(make_server, grpc_stubs, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY_A}\n{KEY_B}\n")
    srv = make_server("--api-key-file", str(keys))

    def post(key):
        return auth_post(srv, key)

    def grpc_code(key):
        return auth_grpc_code(srv, grpc_stubs, key)

    assert post(KEY_A).status_code == 200 and post(KEY_B).status_code == 200
    for bad in (None, GUESS, KEY_A[:-1], KEY_A + "x", KEY_A.lower()):
        r = post(bad)
        assert r.status_code == 401, bad
        assert r.headers.get("WWW-Authenticate") == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error"
    assert grpc_code(KEY_A) == grpc.StatusCode.OK
    assert grpc_code(GUESS) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_code(None) == grpc.StatusCode.UNAUTHENTICATED
    log = srv.log_text()
    srv.terminate()
    # Revoke KEY_A: the key file no longer has it (read at start; SIGHUP: the next test).
    keys.write_text(f"{KEY_B}\n")
    srv2 = make_server("--api-key-file", str(keys))
    srv, old = srv2, srv
    assert post(KEY_A).status_code == 401
    assert grpc_code(KEY_A) == grpc.StatusCode.UNAUTHENTICATED
    assert post(KEY_B).status_code == 200
    log += srv2.log_text()
    # Neither a valid key nor a guessed one ever reaches the log.
    for secret in (KEY_A, KEY_B, GUESS, "ALPHA", "BRAVO", "GUESS"):
        assert secret not in log, f"{secret!r} in the server log"
    assert old.proc.returncode == 0


def test_sighup_rotates_api_keys(make_server, grpc_stubs, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY_A}\n")
    srv = make_server("--api-key-file", str(keys))
    assert auth_post(srv, KEY_A).status_code == 200
    assert auth_post(srv, KEY_B).status_code == 401
    # Rotate: B replaces A; SIGHUP re-reads the file. The log line says it took effect.
    keys.write_text(f"{KEY_B}\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "API keys reloaded" in srv.log_text(), "the key reload")
    assert auth_post(srv, KEY_B).status_code == 200
    assert auth_post(srv, KEY_A).status_code == 401
    assert auth_grpc_code(srv, grpc_stubs, KEY_B) == grpc.StatusCode.OK
    assert auth_grpc_code(srv, grpc_stubs, KEY_A) == grpc.StatusCode.UNAUTHENTICATED
    # An emptied file must not switch authentication off; a missing one changes nothing.
    keys.write_text("\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "has no keys; keeping the 1 current keys" in srv.log_text(), "the refused reload")
    keys.unlink()
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "cannot read" in srv.log_text(), "the failed reload")
    assert auth_post(srv, None).status_code == 401
    assert auth_post(srv, KEY_B).status_code == 200
    assert srv.alive()
    for secret in (KEY_A, KEY_B):
        assert secret not in srv.log_text()
