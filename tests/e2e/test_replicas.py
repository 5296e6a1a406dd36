"""Replicas sharing one --session-dir (docs/SESSIONS.md, "Replicas"): a session saved by a
replica that stops is served by the others, continuing exactly (the logprobs of greedy
tokens with their top-5 alternatives equal those of one uninterrupted session); a session
another replica asks for is handed over (saved, its lease given up) and continues exactly
there; a crashed owner's session is served from its last saved file once its lease
expires, and not before; one owner at a time (503 / UNAVAILABLE "held by another
replica"); a replica's start and stop leave its neighbours' files alone. No sleeps: every
wait polls a condition.
"""
import json
import os
import signal
import threading
import time

import grpc
import openai
import pytest

from e2e_util import wait_for
from test_sessions import SEED, Http, reference

HELD = "held by another replica"


def lease_path(d, name):
    return os.path.join(d, ".lease-" + name.encode().hex())


def handoff_path(d, name):
    return os.path.join(d, ".handoff-" + name.encode().hex())


def file_path(d, name):
    return os.path.join(d, name.encode().hex() + ".rwkvxss")


def replicas(make_server, d, n, *extra):
    return [make_server(*SEED, "--session-dir", d, *extra) for _ in range(n)]


def held_elsewhere(r):
    return (r.status_code == 503 and HELD in r.json()["error"]["message"]
            and r.headers.get("Retry-After") == "1")


def test_handoff_on_request_and_at_sigterm_over_three_replicas(make_server, tmp_path, grpc_stubs):
    d = str(tmp_path / "shared")
    gate = tmp_path / "gate"
    calls = ["The river begins", " in the", " hills and", " ends at sea"]
    # A's session writes wait while the gate exists: its handoff stays pending meanwhile.
    a = make_server(*SEED, "--session-dir", d, "--testing-session-write-gate", str(gate))
    b, c = replicas(make_server, d, 2)
    ha, hb, hc = Http(a), Http(b), Http(c)
    ref = reference(ha, "ref", calls)
    ha.create("s1", prompt=calls[0])
    assert ha.complete("s1", calls[1]) == ref[0]
    gate.write_text("hold")
    # Held by A (in its memory): the others refuse it clearly, never a silent fork, and
    # ask A to hand it over.
    for r in (hb.get("s1"), hc.append("s1", "x"), hb.fork("s1", "s1-copy"), hc.snapshot("s1"),
              hc.delete("s1"), hb.create("s1", ok=False)):
        assert held_elsewhere(r), r.text
    pb, pbg = grpc_stubs
    with grpc.insecure_channel(c.grpc_target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            pbg.InferenceStub(ch).GetSession(pb.GetSessionRequest(session_id="s1"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and HELD in err.value.details()
    assert os.path.exists(handoff_path(d, "s1"))
    wait_for(lambda: "another replica asked for it; saving it to hand it over" in a.log_text(),
             "A to start the handoff save")
    before = ha.get("s1").json()  # A still serves it while the save is held
    assert before["tier"] == "backend", before
    assert held_elsewhere(hb.get("s1"))
    # A neighbour's in-flight write of a session B holds: no other replica's start touches it.
    hb.create("b-own", prompt="mine")
    foreign_tmp = os.path.join(d, ".tmp-0123456789abcdef-" + "b-own".encode().hex() + ".rwkvxss")
    open(foreign_tmp, "w").write("half of b's write")
    e = make_server(*SEED, "--session-dir", d)
    assert os.path.exists(foreign_tmp)
    assert e.terminate() == 0
    os.unlink(foreign_tmp)

    gate.unlink()  # A's save lands: s1 goes to disk and A lets go
    # Counted just before the lease goes, and the request just after it.
    wait_for(lambda: a.metric("rwkvx_session_handoffs_total") == 1 and not os.path.exists(lease_path(d, "s1"))
             and not os.path.exists(handoff_path(d, "s1")), "A to hand s1 over")
    info = hb.get("s1").json()
    assert info["tier"] == "disk" and info["tokens"] == before["tokens"], info
    assert "s1" in hb.list()
    assert hb.complete("s1", calls[2]) == ref[1]  # B continues it exactly
    assert os.path.exists(lease_path(d, "s1"))
    assert ha.get("s1").status_code == 503  # now A is the one refused
    assert a.terminate() == 0

    # At SIGTERM B saves what it holds and lets go; C continues exactly.
    wait_for(lambda: b.metric("rwkvx_session_handoffs_total") == 1, "B to hand s1 over (A asked for it)")
    assert hb.complete("s1", calls[3]) == ref[2]  # B takes it again from the file
    assert b.terminate() == 0  # saves s1 and b-own
    assert "saved 2 sessions" in b.log_text()
    assert set(hc.list()) == {"s1", "b-own"}
    ref2 = reference(hc, "ref2", calls + [" and"])
    assert hc.complete("s1", " and") == ref2[3]
    assert hc.delete("b-own").status_code == 200 and not os.path.exists(file_path(d, "b-own"))


def test_openai_client_at_another_replica_gets_the_session_by_retrying(make_server, tmp_path):
    """No proxy: the openai package, pointed at a replica that does not hold the session,
    retries the 503 (Retry-After: 1) on its own; meanwhile the holder hands the session
    over, and the call continues it exactly."""
    d = str(tmp_path / "shared")
    a, b = replicas(make_server, d, 2)
    ha = Http(a)
    calls = ["Far away", " over the", " hills"]
    ref = reference(ha, "ref", calls)
    ha.create("o1", prompt=calls[0])
    assert ha.complete("o1", calls[1]) == ref[0]
    client = openai.OpenAI(base_url=b.base + "/v1", api_key="none", max_retries=30)
    got = client.post("/sessions/o1/completions", cast_to=object,
                      body={"prompt": calls[2], "max_tokens": 6, "temperature": 0, "logprobs": 5,
                            "ignore_eos": True})
    assert got["choices"][0]["logprobs"] == ref[1]
    assert a.metric("rwkvx_session_handoffs_total") == 1
    assert b.metric('rwkvx_http_requests_total{code="503",path="/v1/sessions"}') >= 1  # it was refused first


def test_crashed_owner_is_replaced_after_its_lease_expires(make_server, tmp_path):
    """kill -9 of the owner while it writes a newer state: before the lease expires the
    other replica answers 503 (and asks for a handoff that never comes); after, it serves
    the last saved file (nothing newer), and the request file is gone."""
    d = str(tmp_path / "shared")
    gate = tmp_path / "gate"
    calls = ["Crash", " and", " take", " over"]
    # Two "hosts": a dead replica's lease cannot be seen dead, it has to expire.
    a = make_server(*SEED, "--session-dir", d, "--session-lease-seconds", "3", "--testing-replica-host", "host-a",
                    "--session-idle-timeout", "0.2", "--testing-session-write-gate", str(gate))
    b = make_server(*SEED, "--session-dir", d, "--session-lease-seconds", "3", "--testing-replica-host", "host-b")
    ha, hb = Http(a), Http(b)
    ha.create("c", prompt=calls[0])
    ha.complete("c", calls[1])
    wait_for(lambda: ha.get("c").json()["tier"] == "disk", "the first save (lease given up)")
    saved = ha.get("c").json()
    saved_bytes = open(file_path(d, "c"), "rb").read()
    gate.write_text("hold")
    ha.complete("c", calls[2])  # A takes the lease again; its next save is held half-way
    wait_for(lambda: a.metric("rwkvx_session_saves_in_flight") == 1, "the second save to start")
    assert held_elsewhere(hb.get("c"))
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    expires = json.load(open(lease_path(d, "c")))["expires_ms"] / 1000.0
    refused = []
    first_ask = time.time()

    def served():  # both replicas read one clock: B's answer must agree with the expiry
        t0 = time.time()
        r = hb.get("c")
        t1 = time.time()
        if r.status_code == 200:
            assert t1 >= expires, "served before the owner's lease expired"
            return r
        assert held_elsewhere(r), r.text
        assert t0 < expires, "refused after the owner's lease expired"
        refused.append(r)
        return None
    r = wait_for(served, "the other replica to take over after the lease expired", interval=0.05)
    assert refused or first_ask >= expires
    info = r.json()
    assert info["tokens"] == saved["tokens"] and info["tier"] == "disk"  # nothing newer claimed
    assert open(file_path(d, "c"), "rb").read() == saved_bytes  # the killed write left no trace
    ref = reference(hb, "ref", [calls[0], calls[1], calls[3]])
    assert hb.complete("c", calls[3]) == ref[1]
    assert not os.path.exists(handoff_path(d, "c"))  # asked of the dead owner: removed at takeover


def test_two_replicas_asked_for_one_session_at_once(make_server, tmp_path):
    d = str(tmp_path / "shared")
    a, b, c = replicas(make_server, d, 3)
    ha, hb, hc = Http(a), Http(b), Http(c)
    names = [f"race-{i}" for i in range(4)]
    for n in names:
        ha.create(n, prompt="Who gets it")
    assert a.terminate() == 0
    for n in names + ["fresh-0", "fresh-1"]:
        results = {}
        go = threading.Barrier(2)

        def ask(h, key, n=n):
            go.wait()
            if n.startswith("fresh"):
                results[key] = h.create(n, prompt="new", ok=False)
            else:
                results[key] = h.s.post(f"{h.base}/{n}/completions",
                                        json={"prompt": "", "max_tokens": 2}, timeout=60)
        ts = [threading.Thread(target=ask, args=(h, k)) for k, h in (("b", hb), ("c", hc))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 503], {k: (r.status_code, r.text) for k, r in results.items()}
        loser = next(r for r in results.values() if r.status_code == 503)
        assert held_elsewhere(loser), loser.text
