"""HTTP abuse: slowloris, idle connections, the connection cap, header and body floods
(split from test_faults.py; docs/RELIABILITY.md).
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
