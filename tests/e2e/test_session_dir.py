"""Named sessions and --session-dir: restarts, a kill mid-write, background saves, and a full,
unusable or read-only directory (split from test_sessions.py). Every wait polls a
condition under a deadline.
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


def session_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".rwkvxss"))


def test_restart_resumes_every_session(make_server, tmp_path):
    d = str(tmp_path / "sessions")
    calls = ["Persist", " me", " please", " now"]
    s1 = make_server(*SEED, "--session-dir", d)
    h = Http(s1)
    ref = reference(h, "ref", calls)
    h.create("p-gen", prompt=calls[0])
    assert h.complete("p-gen", calls[1]) == ref[0]
    h.create("p-append", prompt=calls[0])
    h.append("p-append", calls[1])
    before = h.list()
    assert s1.terminate() == 0
    assert "saved 2 sessions" in s1.log_text()
    assert len(session_files(d)) == 2
    s2 = make_server(*SEED, "--session-dir", d)
    h2 = Http(s2)
    after = h2.list()
    assert set(after) == {"p-gen", "p-append"}
    assert s2.metric("rwkvx_sessions_disk") == 2 and s2.metric("rwkvx_session_disk_bytes") > 0
    for n in after:
        assert after[n]["tokens"] == before[n]["tokens"] and after[n]["tier"] == "disk"
    assert h2.complete("p-gen", calls[2]) == ref[1]
    assert h2.complete("p-gen", calls[3]) == ref[2]
    # p-append holds calls[0] + calls[1] pending: a completion of calls[2] is the cold run.
    cold = reference(h2, "ref2", [calls[0] + calls[1], calls[2]])
    assert h2.complete("p-append", calls[2]) == cold[0]
    assert h2.delete("p-gen").status_code == 200
    assert len(session_files(d)) == 1


def test_kill_mid_write_keeps_the_previous_snapshot(make_server, tmp_path):
    d = str(tmp_path / "sessions")
    calls = ["Crash", " test", " one", " two"]
    # Idle sessions move to disk after 0.2 s; every file write pauses half-way (test hook).
    s1 = make_server(*SEED, "--session-dir", d, "--session-idle-timeout", "0.2",
                     "--testing-session-write-pause-ms", "5000")
    h = Http(s1)
    h.create("c", prompt=calls[0])
    h.complete("c", calls[1])
    wait_for(lambda: h.get("c").json()["tier"] == "disk", "the first write to finish", timeout=90)
    h.complete("c", calls[2])  # reloads it; the next idle move rewrites the file
    wait_for(lambda: [f for f in os.listdir(d) if f.startswith(".tmp-")], "a write in progress")
    s1.proc.send_signal(signal.SIGKILL)
    s1.proc.wait()
    s2 = make_server(*SEED, "--session-dir", d)
    h2 = Http(s2)
    assert set(h2.list()) == {"c"}
    assert not [f for f in os.listdir(d) if f.startswith(".tmp-")]
    # The previous snapshot: create + one completion, as if the second never happened.
    ref = reference(h2, "ref", [calls[0], calls[1], calls[3]])
    assert h2.complete("c", calls[3]) == ref[1]


SAVES = "rwkvx_session_saves_in_flight"


def gated_server(make_server, tmp_path, *extra):
    """A server whose session file writes wait half-way while `gate` exists, with idle
    sessions saved in the background after 0.2 s."""
    d = str(tmp_path / "sessions")
    gate = tmp_path / "gate"
    gate.write_text("hold")
    s = make_server(*SEED, "--session-dir", d, "--session-idle-timeout", "0.2",
                    "--testing-session-write-gate", str(gate), *extra)
    return s, d, gate


def test_background_save_does_not_stall_streams(make_server, tmp_path, api):
    calls = ["Idle", " then", " more"]
    ref = reference(api, "bg-ref", calls)  # on the shared server: no session dir there
    s, d, gate = gated_server(make_server, tmp_path, "--max-tokens", "1000000")
    h = Http(s)
    h.create("idle", prompt=calls[0])
    wait_for(lambda: s.metric(SAVES) == 1, "the idle session's background save to start")
    # Its write is held half-way by the gate. The loop must keep stepping meanwhile: a
    # stream gets its tokens (the old loop-thread write blocked every stream until done).
    with requests.post(s.base + "/v1/completions", stream=True, timeout=120,
                       json={"prompt": "x", "max_tokens": 1000000, "stream": True,
                             "ignore_eos": True}) as r:
        assert r.status_code == 200
        n = 0
        for line in r.iter_lines():
            n += line.startswith(b"data: {")
            if n >= 20:
                break
    assert s.metric(SAVES) == 1  # the write is still held: the tokens came during it
    # The session stays usable where it is while its file is written.
    info = h.get("idle").json()
    assert info["tier"] == "backend", info
    assert h.complete("idle", calls[1]) == ref[0]
    # Used during its save: the finished file is older than the session, so it stays in
    # memory; its next idle period saves it again and then it moves to disk.
    gate.unlink()
    wait_for(lambda: h.get("idle").json()["tier"] == "disk", "the session to move to disk")
    assert session_files(d) == [session_files(d)[0]] and len(session_files(d)) == 1
    assert h.complete("idle", calls[2]) == ref[1]  # the saved state is the latest one


def test_background_save_of_a_deleted_session_leaves_no_file(make_server, tmp_path):
    s, d, gate = gated_server(make_server, tmp_path)
    h = Http(s)
    h.create("gone", prompt="Bye")
    wait_for(lambda: s.metric(SAVES) == 1, "the idle session's background save to start")
    assert h.delete("gone").status_code == 200
    gate.unlink()
    wait_for(lambda: s.metric(SAVES) == 0, "the save to finish")
    assert session_files(d) == []  # it must not come back at the next start
    assert h.get("gone").status_code == 404


def test_full_session_dir_is_a_clear_error(tmp_path):
    """Writes past 64 KiB fail (RLIMIT_FSIZE, like a full disk); a session needs more."""
    d = str(tmp_path / "sessions")
    s = Server.__new__(Server)
    # Start with the file-size limit applied to the server process only.
    orig = subprocess.Popen

    # Through prlimit(1), not preexec_fn: preexec_fn forces fork() in this multi-threaded
    # process (grpcio runs threads here), whose fork handlers can kill the child before exec.
    def popen(args, *a, **kw):
        return orig(["prlimit", f"--fsize={64 << 10}:unlimited", *args], *a, **kw)

    subprocess.Popen = popen
    try:
        Server.__init__(s, *SEED, "--session-dir", d, "--session-memory-bytes", "400000",
                        "--session-host-bytes", "0")
    finally:
        subprocess.Popen = orig
    try:
        h = Http(s)
        ref = reference(h, "ref", ["a", "b"])  # one session at a time fits in memory
        h.create("first", prompt="a")
        r = h.create("second", prompt="b", ok=False)
        assert r.status_code == 429, r.text
        assert "session directory is full" in r.json()["error"]["message"]
        assert "File too large" in s.log_text() or "too large" in s.log_text().lower()
        # Nothing lost: the session that could not move stays usable in memory.
        assert h.get("first").json()["tier"] == "host"
        assert s.metric("rwkvx_sessions_host") == 1
        assert h.complete("first", "b") == ref[0]
        assert s.alive()
    finally:
        s.close()


def test_unusable_session_dir_fails_at_startup(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    from e2e_util import binary
    p = subprocess.run([binary(), "serve", *SEED, "--session-dir", str(f / "sub"), "--http-port", "0",
                        "--grpc-port", "-1"], capture_output=True, timeout=60)
    assert p.returncode != 0
    assert b"--session-dir" in p.stderr


def _immutable(path, on):
    """chattr +i / -i: even root cannot create, rename or delete entries in the folder."""
    r = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return r.returncode == 0


def test_read_only_session_dir(tmp_path):
    """A session dir that cannot be written: refused at startup with a clear message; one
    that turns read-only while serving gives the request that needed it a clear error, and
    the session that could not move stays usable in memory."""
    d = tmp_path / "sessions"
    d.mkdir()
    if not _immutable(d, True):
        pytest.skip("chattr +i is not available on this filesystem (needs root and ext4/xfs/btrfs)")
    try:
        from e2e_util import binary
        p = subprocess.run([binary(), "serve", *SEED, "--session-dir", str(d), "--http-port", "0",
                            "--grpc-port", "-1"], capture_output=True, timeout=60)
        assert p.returncode != 0
        assert b"--session-dir" in p.stderr
    finally:
        _immutable(d, False)

    s = Server(*SEED, "--session-dir", str(d), "--session-memory-bytes", "400000",
               "--session-host-bytes", "0")
    try:
        h = Http(s)
        ref = reference(h, "ref", ["a", "b"])
        h.create("first", prompt="a")
        assert _immutable(d, True)
        r = h.create("second", prompt="b", ok=False)
        assert r.status_code in (429, 503), r.text
        assert str(d) not in r.text  # no server paths in client errors
        assert h.get("first").json()["tier"] == "host"
        assert h.complete("first", "b") == ref[0]
        assert s.alive()
    finally:
        _immutable(d, False)
        s.close()
