"""Bad input gets a clear 4xx (OpenAI error body) and the server keeps serving."""
import socket

import pytest
import requests


def post(server, path, data, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(server.base + path, data=data, headers=h, timeout=30)


CASES = [
    ("malformed json", "/v1/completions", b'{"prompt": "x", ', 400),
    ("not an object", "/v1/completions", b'[1, 2]', 400),
    ("prompt wrong type", "/v1/completions", b'{"prompt": 5}', 400),
    ("max_tokens wrong type", "/v1/completions", b'{"prompt": "x", "max_tokens": "9"}', 400),
    ("temperature wrong type", "/v1/completions", b'{"prompt": "x", "temperature": "hot"}', 400),
    ("stream wrong type", "/v1/completions", b'{"prompt": "x", "stream": 1}', 400),
    ("unknown model", "/v1/completions", b'{"prompt": "x", "model": "gpt-9"}', 404),
    ("negative max_tokens", "/v1/completions", b'{"prompt": "x", "max_tokens": -5}', 400),
    ("zero max_tokens", "/v1/completions", b'{"prompt": "x", "max_tokens": 0}', 400),
    ("huge max_tokens", "/v1/completions", b'{"prompt": "x", "max_tokens": 100000000000}', 400),
    ("gigantic max_tokens", "/v1/completions", b'{"prompt": "x", "max_tokens": 1e300}', 400),
    ("temperature < 0", "/v1/completions", b'{"prompt": "x", "temperature": -0.5}', 400),
    ("top_p > 1", "/v1/completions", b'{"prompt": "x", "top_p": 1.5}', 400),
    ("n = 0", "/v1/completions", b'{"prompt": "x", "n": 0}', 400),
    ("empty prompt", "/v1/completions", b'{"prompt": ""}', 400),
    ("empty token prompt", "/v1/completions", b'{"prompt": []}', 400),
    ("token id out of range", "/v1/completions", b'{"prompt": [1, 99999]}', 400),
    ("missing prompt", "/v1/completions", b'{"max_tokens": 3}', 400),
    ("invalid utf-8", "/v1/completions", b'{"prompt": "\xff\xfe abc"}', 400),
    ("invalid utf-8 chat", "/v1/chat/completions",
     b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}', 400),
    ("empty messages", "/v1/chat/completions", b'{"messages": []}', 400),
    ("bad role", "/v1/chat/completions", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400),
    ("messages wrong type", "/v1/chat/completions", b'{"messages": "hi"}', 400),
    ("deep json", "/v1/completions", b'{"prompt": "x", "a": ' + b"[" * 500 + b"]" * 500 + b"}", 400),
    ("stop wrong type", "/v1/completions", b'{"prompt": "x", "stop": 3}', 400),
    ("top_logprobs without logprobs", "/v1/chat/completions",
     b'{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}', 400),
]


@pytest.mark.parametrize("name,path,body,status", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_4xx(server, name, path, body, status):
    r = post(server, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    # The server keeps serving.
    ok = post(server, "/v1/completions", b'{"prompt": "ok", "max_tokens": 2}')
    assert ok.status_code == 200


def test_oversized_body_is_413(server):
    body = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    try:
        r = post(server, "/v1/completions", body)
        assert r.status_code == 413
    except requests.exceptions.ConnectionError:
        pass  # the server may close before the client finished sending
    assert post(server, "/v1/completions", b'{"prompt": "ok", "max_tokens": 2}').status_code == 200


def test_oversized_headers_is_431(server):
    r = requests.get(server.base + "/health", headers={"X-Big": "a" * (64 << 10)}, timeout=30)
    assert r.status_code == 431
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


def test_garbage_http_is_400(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = s.recv(1000)
    assert data.startswith(b"HTTP/1.1 400")
    assert requests.get(server.base + "/health", timeout=10).status_code == 200


def test_unknown_path_and_method(server):
    assert requests.get(server.base + "/v2/nothing", timeout=10).status_code == 404
    assert requests.get(server.base + "/v1/completions", timeout=10).status_code == 405


WRONG_METHODS = [
    ("DELETE", "/v1/models", "GET"),
    ("POST", "/v1/models", "GET"),
    ("PUT", "/v1/models/any", "GET"),
    ("GET", "/v1/chat/completions", "POST"),
    ("POST", "/health", "GET"),
    ("PUT", "/ready", "GET"),
    ("POST", "/metrics", "GET"),
    ("PUT", "/v1/sessions", "GET, POST"),
    ("POST", "/v1/sessions/some-id", "GET, DELETE"),
    ("GET", "/v1/sessions/some-id/append", "POST"),
    ("DELETE", "/v1/sessions/some-id/snapshot", "GET, PUT, POST"),
    ("GET", "/v1/snapshot/completions", "POST"),
]


@pytest.mark.parametrize("method,path,allow", WRONG_METHODS, ids=[f"{m} {p}" for m, p, _ in WRONG_METHODS])
def test_wrong_method_is_405_with_allow(server, method, path, allow):
    r = requests.request(method, server.base + path, timeout=10)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    assert err["code"] == "method_not_allowed"
    assert requests.get(server.base + "/v1/models", timeout=10).status_code == 200


def test_unknown_method_is_405(server):
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:
        s.sendall(b"BREW /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405"), head
    assert b"\r\nAllow: GET\r\n" in head, head
    assert b"method_not_allowed" in body
    # Unknown paths stay 404 whatever the method.
    assert requests.delete(server.base + "/v1/nothing", timeout=10).status_code == 404
    assert requests.get(server.base + "/v1/models", timeout=10).status_code == 200


def test_api_keys(make_server):
    s = make_server("--api-key", "sekrit-1", "--api-key", "sekrit-2")
    body = b'{"prompt": "x", "max_tokens": 2}'
    assert post(s, "/v1/completions", body).status_code == 401
    assert post(s, "/v1/completions", body, {"Authorization": "Bearer wrong"}).status_code == 401
    assert post(s, "/v1/completions", body, {"Authorization": "Bearer sekrit-2"}).status_code == 200
    # Health and metrics stay open for probes and scrapers.
    assert requests.get(s.base + "/health", timeout=10).status_code == 200
    assert requests.get(s.base + "/metrics", timeout=10).status_code == 200
