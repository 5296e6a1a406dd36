"""Helpers shared by the fault e2e tests (test_faults.py, test_http_limits.py,
test_api_keys.py, test_memory_faults.py)."""
import json
import os
import signal
import socket
import subprocess
import threading

import grpc
import pytest
import requests

from e2e_util import binary, wait_for  # noqa: F401

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
