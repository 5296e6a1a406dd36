"""The session API (docs/SESSIONS.md) against the real server: HTTP (requests, openai) and
gRPC (grpcio). Resumed, forked, restored, client-held and reloaded-after-restart sessions
must give exactly the logprobs (greedy tokens with top_logprobs) of a run of the same
calls on a session that was never interrupted; bad snapshots are refused with a reason.
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

SEED = ["--embedded-seed", "7"]
GREEDY = {"temperature": 0.0, "logprobs": 5, "ignore_eos": True}


def ids(text):
    return [b + 1 for b in text.encode()]  # the bytes tokenizer


class Http:
    def __init__(self, server):
        self.base = server.base + "/v1/sessions"
        self.s = requests.Session()

    def create(self, sid=None, prompt=None, ok=True):
        body = {}
        if sid is not None:
            body["session_id"] = sid
        if prompt is not None:
            body["prompt"] = prompt
        r = self.s.post(self.base, json=body, timeout=30)
        if ok:
            assert r.status_code == 200, r.text
            return r.json()
        return r

    def get(self, sid):
        return self.s.get(f"{self.base}/{sid}", timeout=30)

    def append(self, sid, prompt):
        return self.s.post(f"{self.base}/{sid}/append", json={"prompt": prompt}, timeout=30)

    def complete(self, sid, prompt, n=6):
        r = self.s.post(f"{self.base}/{sid}/completions",
                        json={"prompt": prompt, "max_tokens": n, **GREEDY}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["logprobs"]

    def fork(self, sid, new):
        return self.s.post(f"{self.base}/{sid}/fork", json={"session_id": new}, timeout=30)

    def snapshot(self, sid):
        return self.s.get(f"{self.base}/{sid}/snapshot", timeout=60)

    def restore(self, sid, data):
        return self.s.put(f"{self.base}/{sid}/snapshot", data=data,
                          headers={"Content-Type": "application/octet-stream"}, timeout=60)

    def delete(self, sid):
        return self.s.delete(f"{self.base}/{sid}", timeout=30)

    def list(self):
        return {s["id"]: s for s in self.s.get(self.base, timeout=30).json()["data"]}


@pytest.fixture(scope="module")
def srv():
    s = Server(*SEED)
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(srv):
    return Http(srv)


def reference(api, name, calls):
    """A session that is never interrupted: create(prompt), then one completion per call."""
    api.create(name, prompt=calls[0])
    out = [api.complete(name, c) for c in calls[1:]]
    api.delete(name)
    return out


def test_create_get_list_append_delete(srv, api):
    s = api.create("life-1", prompt="Hello")
    assert s["id"] == "life-1" and s["tokens"] == 5 and s["pending_tokens"] == 5
    assert s["bytes"] > 0 and not s["busy"]
    r = api.append("life-1", " world")
    assert r.status_code == 200 and r.json()["tokens"] == 11
    assert api.append("life-1", [1, 2, 3]).json()["tokens"] == 14
    assert "life-1" in api.list()
    auto = api.create()
    assert auto["id"].startswith("sess-")
    assert api.create("life-1", ok=False).status_code == 409
    assert api.create("bad/name", ok=False).status_code in (400, 404)
    assert api.create("bad name!", ok=False).status_code == 400
    assert api.append("life-1", [99999]).status_code == 400
    assert api.delete("life-1").status_code == 200
    assert api.delete(auto["id"]).status_code == 200
    for r in (api.get("life-1"), api.delete("life-1"), api.append("life-1", "x"),
              api.snapshot("life-1"), api.fork("life-1", "x")):
        assert r.status_code == 404, r.text
        assert "life-1" in r.json()["error"]["message"]
    assert "life-1" not in api.list()


def test_session_completion_equals_a_cold_completion(srv, api):
    """create(prompt) + append + completion(prompt) feeds exactly the tokens of one cold
    /v1/completions over their concatenation, in the same chunks: the same logprobs."""
    api.create("cold-1", prompt="The quick ")
    api.append("cold-1", "brown ")
    got = api.complete("cold-1", "fox", n=8)
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="none")
    cold = client.completions.create(model="rwkvx-embedded-random-bytes", prompt="The quick brown fox",
                                     max_tokens=8, temperature=0, logprobs=5,
                                     extra_body={"ignore_eos": True})
    assert got["tokens"] == cold.choices[0].logprobs.tokens
    assert got["token_logprobs"] == cold.choices[0].logprobs.token_logprobs
    assert got["top_logprobs"] == cold.choices[0].logprobs.top_logprobs
    api.delete("cold-1")


def test_create_and_append_prefill_in_chunks(make_server):
    """With --prefill-chunk 8, create and append feed every whole chunk but the last at
    once (the session holds the state, few tokens stay pending) and the result is still
    exactly a cold completion over everything."""
    s = make_server(*SEED, "--prefill-chunk", "8")
    h = Http(s)
    first = h.create("pf", prompt="x" * 30)
    assert first["tokens_seen"] == 24 and first["pending_tokens"] == 6
    r = h.append("pf", "y" * 20).json()
    assert r["tokens_seen"] == 48 and r["pending_tokens"] == 2 and not r["busy"]
    got = h.complete("pf", "z", n=8)
    client = openai.OpenAI(base_url=s.base + "/v1", api_key="none")
    cold = client.completions.create(model="rwkvx-embedded-random-bytes", prompt="x" * 30 + "y" * 20 + "z",
                                     max_tokens=8, temperature=0, logprobs=5,
                                     extra_body={"ignore_eos": True})
    assert got["token_logprobs"] == cold.choices[0].logprobs.token_logprobs
    assert got["top_logprobs"] == cold.choices[0].logprobs.top_logprobs


def test_resumed_forked_restored_equal_uninterrupted(srv, api):
    calls = ["Once upon", " a time", " there was", " a cat"]
    ref = reference(api, "ref-1", calls)
    api.create("a", prompt=calls[0])
    assert api.complete("a", calls[1]) == ref[0]
    snap = api.snapshot("a")
    assert snap.status_code == 200
    assert snap.headers["Content-Type"] == "application/octet-stream"
    assert snap.content[:8] == b"RWKVXSS\0"
    assert api.fork("a", "a-fork").status_code == 200
    assert api.restore("a-restored", snap.content).status_code == 200
    assert api.restore("a-restored", snap.content).status_code == 409
    for name in ("a", "a-fork", "a-restored"):
        assert api.complete(name, calls[2]) == ref[1], name
    # The fork and the original diverge independently and stay exact.
    assert api.complete("a-fork", calls[3]) == ref[2]
    assert api.complete("a", calls[3]) == ref[2]
    for name in ("a", "a-fork", "a-restored"):
        api.delete(name)


def test_streaming_session_completion(srv, api):
    api.create("stream-1", prompt="abc")
    r = requests.post(f"{api.base}/stream-1/completions", stream=True, timeout=60,
                      json={"prompt": "d", "max_tokens": 5, "stream": True, **GREEDY})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    lines = [l for l in r.iter_lines() if l.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]"
    assert api.get("stream-1").json()["tokens"] == 4 + 5
    api.delete("stream-1")


def test_busy_session_is_refused(srv, api):
    api.create("busy-1", prompt="x")
    resp = requests.post(f"{api.base}/busy-1/completions", stream=True, timeout=120,
                         json={"prompt": "y", "max_tokens": 4000, "stream": True,
                               "temperature": 0, "ignore_eos": True})
    try:
        wait_for(lambda: api.get("busy-1").json()["busy"], "the session to be busy")
        for r in (api.snapshot("busy-1"), api.fork("busy-1", "busy-2"), api.append("busy-1", "z"),
                  api.delete("busy-1")):
            assert r.status_code == 409, r.text
            assert "in use" in r.json()["error"]["message"]
    finally:
        resp.close()
    wait_for(lambda: not api.get("busy-1").json()["busy"], "the session to be released")
    assert api.delete("busy-1").status_code == 200


def test_client_held_state_http(srv, api):
    calls = ["Client", " held", " state"]
    ref = reference(api, "ref-ch", calls)
    url = srv.base + "/v1/snapshot/completions"
    # No snapshot: a fresh state; calls[0] + calls[1] as one prompt equals create+complete.
    r = requests.post(url, json={"prompt": calls[0] + calls[1], "max_tokens": 6, **GREEDY}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["logprobs"] == ref[0]
    snap = base64.b64decode(body["snapshot"])
    r = requests.post(url, json={"prompt": calls[2], "max_tokens": 6, "snapshot": body["snapshot"],
                                 **GREEDY}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["logprobs"] == ref[1]
    # The ephemeral sessions are gone.
    assert not [n for n in api.list() if n.startswith("client-state-")]
    # And the same snapshot restores into a named session.
    assert api.restore("from-client", snap).status_code == 200
    assert api.complete("from-client", calls[2]) == ref[1]
    api.delete("from-client")
    r = requests.post(url, json={"prompt": "x", "snapshot": "%%%"}, timeout=30)
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]


def fix_crc(b):
    return b[:-4] + struct.pack("<I", zlib.crc32(b[:-4]) & 0xFFFFFFFF)


def bad_snapshots(good, foreign):
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0x40
    version = bytearray(good[:-4])
    version[8:12] = struct.pack("<I", 99)
    return [("damaged", bytes(corrupt), "checksum"),
            ("truncated", good[: len(good) - 1000], "truncated"),
            ("wrong model", foreign, "another model"),
            ("wrong version", fix_crc(bytes(version) + b"\0\0\0\0"), "version 99"),
            ("not a snapshot", b"hello world, not a snapshot at all", "not a rwkvx session snapshot")]


@pytest.fixture(scope="module")
def foreign_snapshot():
    other = Server("--embedded-seed", "8")
    try:
        h = Http(other)
        h.create("f", prompt="foreign")
        return h.snapshot("f").content
    finally:
        other.close()


def test_bad_snapshots_refused_http(srv, api, foreign_snapshot):
    api.create("good", prompt="good")
    good = api.snapshot("good").content
    for what, data, reason in bad_snapshots(good, foreign_snapshot):
        r = api.restore("bad-1", data)
        assert r.status_code == 400, (what, r.text)
        assert reason in r.json()["error"]["message"], (what, r.text)
        r = requests.post(srv.base + "/v1/snapshot/completions", timeout=30,
                          json={"prompt": "x", "snapshot": base64.b64encode(data).decode()})
        assert r.status_code == 400 and reason in r.json()["error"]["message"], what
    assert "bad-1" not in api.list()
    api.delete("good")


@pytest.fixture(scope="module")
def stub(srv, grpc_stubs):
    _, pbg = grpc_stubs
    ch = grpc.insecure_channel(srv.grpc_target, options=[
        ("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)])
    yield pbg.InferenceStub(ch)
    ch.close()


def ggen(stub, pb, **kw):
    req = pb.GenerateRequest(max_tokens=6, ignore_eos=True, logprobs=True, top_logprobs=5,
                             sampling=pb.SamplingParams(temperature=0.0), **kw)
    events = list(stub.Generate(req, timeout=60))
    toks = [(t.token_id, t.logprob, [(a.token_id, a.logprob) for a in t.top_logprobs])
            for e in events for t in e.tokens]
    return toks, events[-1]


def test_grpc_session_api(srv, stub, grpc_stubs):
    pb, _ = grpc_stubs
    T = pb.TokenIds
    calls = [ids("gRPC sess"), ids("ion one"), ids(" two"), ids(" three")]
    stub.CreateSession(pb.CreateSessionRequest(session_id="g-ref", token_ids=T(ids=calls[0])), timeout=10)
    ref = [ggen(stub, pb, session_id="g-ref", token_ids=T(ids=c))[0] for c in calls[1:]]
    s = stub.CreateSession(pb.CreateSessionRequest(session_id="g-a", text="gRPC sess"), timeout=10)
    assert s.pending_tokens == len(calls[0]) and s.tier == "backend"
    assert ggen(stub, pb, session_id="g-a", token_ids=T(ids=calls[1]))[0] == ref[0]
    snap = stub.SnapshotSession(pb.SnapshotSessionRequest(session_id="g-a"), timeout=30).snapshot
    assert snap[:8] == b"RWKVXSS\0"
    f = stub.ForkSession(pb.ForkSessionRequest(session_id="g-a", new_session_id="g-fork"), timeout=10)
    assert f.session_id == "g-fork"
    r = stub.RestoreSession(pb.RestoreSessionRequest(session_id="g-rest", snapshot=snap), timeout=30)
    assert r.tokens_seen + r.pending_tokens == s.pending_tokens + len(calls[1]) + 6
    for name in ("g-a", "g-fork", "g-rest"):
        assert ggen(stub, pb, session_id=name, token_ids=T(ids=calls[2]))[0] == ref[1], name
    # Append without generating, then generate with an empty prompt.
    stub.AppendSession(pb.AppendSessionRequest(session_id="g-a", token_ids=T(ids=calls[3])), timeout=10)
    assert ggen(stub, pb, session_id="g-a", text="")[0] == ref[2]
    listed = {x.session_id for x in stub.ListSessions(pb.ListSessionsRequest(), timeout=10).sessions}
    assert {"g-ref", "g-a", "g-fork", "g-rest"} <= listed
    # Client-held state: the snapshot rides on the request and comes back on the last event.
    toks, last = ggen(stub, pb, token_ids=T(ids=calls[0] + calls[1]), return_snapshot=True)
    assert toks == ref[0] and last.snapshot[:8] == b"RWKVXSS\0"
    toks, last2 = ggen(stub, pb, token_ids=T(ids=calls[2]), snapshot=last.snapshot)
    assert toks == ref[1] and len(last2.snapshot) > 0
    with pytest.raises(grpc.RpcError) as e:
        ggen(stub, pb, token_ids=T(ids=calls[2]), snapshot=last.snapshot, session_id="g-a")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for code, rpc, req in [
            (grpc.StatusCode.NOT_FOUND, stub.SnapshotSession, pb.SnapshotSessionRequest(session_id="nope")),
            (grpc.StatusCode.NOT_FOUND, stub.ForkSession, pb.ForkSessionRequest(session_id="nope")),
            (grpc.StatusCode.NOT_FOUND, stub.AppendSession, pb.AppendSessionRequest(session_id="nope", text="x")),
            (grpc.StatusCode.ALREADY_EXISTS, stub.RestoreSession,
             pb.RestoreSessionRequest(session_id="g-a", snapshot=snap)),
            (grpc.StatusCode.INVALID_ARGUMENT, stub.CreateSession, pb.CreateSessionRequest(session_id="a b"))]:
        with pytest.raises(grpc.RpcError) as e:
            rpc(req, timeout=10)
        assert e.value.code() == code, req
    for name in ("g-ref", "g-a", "g-fork", "g-rest"):
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=name), timeout=10)


def test_bad_snapshots_refused_grpc(srv, stub, grpc_stubs, foreign_snapshot):
    pb, _ = grpc_stubs
    stub.CreateSession(pb.CreateSessionRequest(session_id="g-good", text="good"), timeout=10)
    good = stub.SnapshotSession(pb.SnapshotSessionRequest(session_id="g-good"), timeout=30).snapshot
    for what, data, reason in bad_snapshots(good, foreign_snapshot):
        with pytest.raises(grpc.RpcError) as e:
            stub.RestoreSession(pb.RestoreSessionRequest(session_id="g-bad", snapshot=data), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert reason in e.value.details(), (what, e.value.details())
        with pytest.raises(grpc.RpcError) as e:
            ggen(stub, pb, text="x", snapshot=data)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
    stub.DeleteSession(pb.DeleteSessionRequest(session_id="g-good"), timeout=10)


def test_snapshot_upload_limit(make_server):
    s = make_server(*SEED, "--max-snapshot-bytes", "1000")
    h = Http(s)
    h.create("big", prompt="x")
    data = h.snapshot("big").content
    assert len(data) > 1000
    r = h.restore("big-2", data)
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]


# ---- persistence -------------------------------------------------------------------------

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
