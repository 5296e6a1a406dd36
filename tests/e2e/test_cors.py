"""CORS (--allowed-origins, docs/SERVER.md): preflights answered before the API-key check,
Access-Control-Allow-Origin on JSON and SSE replies for allowed origins only, "*" for any,
nothing at all without the flag, and bad origins refused at start-up."""
import subprocess

import requests

from e2e_util import binary

APP = "https://app.example.com"
DEV = "http://localhost:3000"


def preflight(srv, path, origin, method="POST", headers="authorization, content-type"):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(srv.base + path, headers=h, timeout=30)


def test_listed_origins(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("rk-cors-1\n")
    srv = make_server("--allowed-origins", f"{APP}, {DEV}", "--api-key-file", str(keys))
    r = preflight(srv, "/v1/chat/completions", APP)
    assert r.status_code == 204  # no key needed: browsers send preflights without one
    assert r.headers["Access-Control-Allow-Origin"] == APP and r.headers["Vary"] == "Origin"
    assert r.headers["Access-Control-Allow-Methods"] == "POST"
    assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    r = preflight(srv, "/v1/sessions/abc", DEV, method="DELETE", headers=None)
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == DEV
    assert set(r.headers["Access-Control-Allow-Methods"].replace(" ", "").split(",")) == {"GET", "DELETE"}
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = preflight(srv, "/v1/chat/completions", "https://evil.example")
    assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    assert "allowed-origins" in r.json()["error"]["message"]
    assert preflight(srv, "/v1/nothing-here", APP).status_code == 404
    key = {"Authorization": "Bearer rk-cors-1"}
    # The requests themselves: the header for an allowed origin (errors included, so that the
    # page can read them), none for another origin or without an Origin header.
    r = requests.get(srv.base + "/v1/models", headers={"Origin": APP, **key}, timeout=30)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == APP
    r = requests.get(srv.base + "/v1/models", headers={"Origin": APP}, timeout=30)
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == APP
    r = requests.get(srv.base + "/v1/models", headers={"Origin": "https://evil.example", **key}, timeout=30)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(srv.base + "/v1/models", headers=key, timeout=30)
    assert "Access-Control-Allow-Origin" not in r.headers
    with requests.post(srv.base + "/v1/completions", headers={"Origin": DEV, **key}, stream=True, timeout=60,
                       json={"prompt": "hi", "max_tokens": 3, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Access-Control-Allow-Origin"] == DEV and r.headers["Vary"] == "Origin"
        assert b"[DONE]" in b"".join(r.iter_content(None))


def test_any_origin_and_off(make_server):
    srv = make_server("--allowed-origins", "*")
    r = preflight(srv, "/tokenize", "https://anything.example")
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers
    r = requests.post(srv.base + "/tokenize", json={"prompt": "x"}, headers={"Origin": "https://a.example"}, timeout=30)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    off = make_server()
    r = preflight(off, "/v1/chat/completions", APP)
    assert r.status_code == 405 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(off.base + "/v1/models", headers={"Origin": APP}, timeout=30)
    assert "Access-Control-Allow-Origin" not in r.headers


def test_refused_bodies_carry_the_header(make_server):
    # A request the server cannot read (413 here) still answers an allowed page readably.
    srv = make_server("--allowed-origins", APP, "--max-body-bytes", "1024")
    r = requests.post(srv.base + "/v1/completions", data=b"x" * 4096, headers={"Origin": APP}, timeout=30)
    assert r.status_code == 413 and r.headers["Access-Control-Allow-Origin"] == APP
    r = requests.post(srv.base + "/v1/completions", data=b"x" * 4096, headers={"Origin": "https://b.example"}, timeout=30)
    assert r.status_code == 413 and "Access-Control-Allow-Origin" not in r.headers


def test_bad_origins_fail_at_start():
    for bad in ("https://app.example.com/", "app.example.com", "https://a.com/path", "https://a.com, *x"):
        r = subprocess.run([binary(), "serve", "--allowed-origins", bad], capture_output=True, timeout=60)
        assert r.returncode != 0 and b"--allowed-origins" in r.stderr, bad
