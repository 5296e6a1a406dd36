"""Batch invariance, cancellation on disconnect, queue-full refusal, SIGTERM drain."""
import concurrent.futures as cf
import http.client
import json

import grpc
import requests

from e2e_util import wait_for

RUNNING = "rwkvx_requests_running"
WAITING = "rwkvx_requests_waiting"
SESSIONS = "rwkvx_sessions_active"
CANCELLED = 'rwkvx_requests_finished_total{finish_reason="cancelled"}'


def complete(server, prompt, max_tokens=16, **kw):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **kw}
    r = requests.post(server.base + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


class RawStream:
    """A streaming completion on its own connection, which the test can drop."""

    def __init__(self, server, max_tokens=4000, path="/v1/completions", **kw):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        body = {"prompt": "stream me", "max_tokens": max_tokens, "stream": True,
                "ignore_eos": True, "temperature": 0, **kw}
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def events(self):
        """Yields each SSE data payload (parsed JSON, or the string [DONE])."""
        while True:
            line = self.resp.readline()
            if not line:
                return
            line = line.strip()
            if line.startswith(b"data: "):
                data = line[6:].decode()
                yield data if data == "[DONE]" else json.loads(data)

    def close(self):
        self.conn.sock.close() if self.conn.sock else None
        self.conn.close()


def test_32_concurrent_greedy_equal_each_alone(server):
    prompts = [f"Request number {i}: " + "x" * (i * 7) for i in range(32)]
    alone = [complete(server, p) for p in prompts]
    with cf.ThreadPoolExecutor(32) as ex:
        together = list(ex.map(lambda p: complete(server, p), prompts))
    assert together == alone


def test_disconnect_mid_stream_frees_session(server):
    before = server.metric(CANCELLED)
    s = RawStream(server)
    assert s.status == 200
    it = s.events()
    for _ in range(3):
        next(it)
    assert server.metric(SESSIONS) >= 1
    s.close()
    wait_for(lambda: server.metric(CANCELLED) == before + 1, "the request to be cancelled")
    wait_for(lambda: server.metric(SESSIONS) == 0 and server.metric(RUNNING) == 0,
             "the session to be freed")
    assert server.metric("rwkvx_session_state_bytes") == 0
    complete(server, "still serving", 2)


def test_queue_full_gives_429_and_resource_exhausted(make_server, grpc_stubs):
    pb, pbg = grpc_stubs
    srv = make_server("--max-sessions", "1", "--max-queue", "1")
    a = RawStream(srv)
    next(a.events())
    wait_for(lambda: srv.metric(RUNNING) == 1, "request A to run")
    b = RawStream(srv)  # waits in the queue (its headers come once it is admitted)
    wait_for(lambda: srv.metric(WAITING) == 1, "request B to wait")
    r = requests.post(srv.base + "/v1/completions", json={"prompt": "c", "max_tokens": 2},
                      timeout=30)
    assert r.status_code == 429
    assert r.headers.get("Retry-After")
    assert r.json()["error"]["type"] == "rate_limit_error"
    ch = grpc.insecure_channel(srv.grpc_target)
    stub = pbg.InferenceStub(ch)
    try:
        list(stub.Generate(pb.GenerateRequest(text="c", max_tokens=2), timeout=30))
        raise AssertionError("expected RESOURCE_EXHAUSTED")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ch.close()
    a.close()
    wait_for(lambda: srv.metric(RUNNING) == 1 and srv.metric(WAITING) == 0, "B to be admitted")
    b.close()
    wait_for(lambda: srv.metric(SESSIONS) == 0, "all sessions freed")
    assert srv.metric('rwkvx_requests_rejected_total{reason="queue_full"}') == 2


def test_sigterm_lets_running_requests_finish(make_server):
    srv = make_server("--drain-grace", "60")
    s = RawStream(srv, max_tokens=64)
    it = s.events()
    first = next(it)
    srv.proc.send_signal(15)
    rest = list(it)
    assert rest[-1] == "[DONE]"
    finishes = [e["choices"][0]["finish_reason"] for e in [first] + rest[:-1]
                if e != "[DONE]" and e["choices"] and e["choices"][0]["finish_reason"]]
    assert finishes == ["length"]
    assert srv.terminate() == 0
    assert "draining" in srv.log_text()


def test_sigterm_grace_ends_long_requests_and_refuses_new(make_server):
    srv = make_server("--drain-grace", "1", "--max-tokens", "1000000")
    s = RawStream(srv, max_tokens=1000000)
    it = s.events()
    next(it)
    srv.proc.send_signal(15)
    wait_for(lambda: requests.get(srv.base + "/ready", timeout=10).status_code == 503,
             "readiness to go false")
    assert requests.get(srv.base + "/health", timeout=10).status_code == 200
    r = requests.post(srv.base + "/v1/completions", json={"prompt": "late", "max_tokens": 2},
                      timeout=30)
    assert r.status_code == 503
    events = list(it)
    finishes = [e["choices"][0]["finish_reason"] for e in events
                if e != "[DONE]" and e["choices"] and e["choices"][0]["finish_reason"]]
    assert finishes == ["shutdown"]
    assert srv.terminate() == 0


def test_slow_reader_cannot_stall_the_engine(make_server):
    import socket
    srv = make_server("--stream-buffer-bytes", "4096", "--http-send-buffer-bytes", "4096",
                      "--max-tokens", "1000000")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # small window, and never read
    s.connect(("127.0.0.1", srv.http_port))
    body = json.dumps({"prompt": "flood", "max_tokens": 1000000, "stream": True,
                       "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    key = 'rwkvx_requests_finished_total{finish_reason="slow_client"}'
    # Other clients keep being served while the slow one backs up...
    complete(srv, "meanwhile", 4)
    # ...and the slow one is dropped once its buffer overflows, freeing its session.
    wait_for(lambda: srv.metric(key) == 1, "the slow reader to be dropped", timeout=300)
    wait_for(lambda: srv.metric(SESSIONS) == 0, "its session to be freed")
    complete(srv, "after", 4)
    s.close()
