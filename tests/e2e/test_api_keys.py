"""API keys: unknown and revoked keys, SIGHUP rotation, no key in the log (split from
test_faults.py; docs/RELIABILITY.md).
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
