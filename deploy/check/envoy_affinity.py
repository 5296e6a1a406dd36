#!/usr/bin/env python3
"""Runs deploy/envoy/envoy.yaml for real in front of three rwkvx replicas on loopback and
checks session affinity and failover (docs/DEPLOY.md, "What CI checks").

  envoy_affinity.py --envoy .venv/bin/envoy --rwkvx build/rwkvx \
      --front deploy/envoy/envoy.yaml --pod-router deploy/base/pod-router.yaml

Three "pods" on 127.0.0.2-4, each a replica plus its pod router, with the same ports as
pods would have, behind one front proxy. The configs are used as written except: the
front cluster's DNS name becomes the three static addresses (in Kubernetes the headless
Service's DNS answer), the pod routers listen on their pod's address and forward to it,
and all ports are free ports. Routes, hash policies, retries and health checks are
untouched. Checked:
  1. requests with one `x-session-id` all reach one replica; sessions spread over all three;
  2. /v1/sessions/<id>... without the header reaches the replica of `x-session-id: <id>`;
  3. gRPC calls (ListModels) with `x-session-id` metadata reach the replica of the HTTP
     requests (when grpcio is importable);
  4. SIGTERM on one replica (drain): once Envoy has taken it out of the ring, its sessions
     are served by the others. Envoy's ring gives each host ring_size / N points, so when
     N changes the remaining hosts gain points and some sessions of live replicas move
     between them too (about 1/6 of them from 3 to 2 replicas, estimated from the point
     counts): the check counts them;
  5. every named session (/v1/sessions) continues exactly (greedy tokens and top-5
     logprobs equal across sessions with one history): the stopped replica's from its
     SIGTERM save in the shared --session-dir (the PVC in Kubernetes); those the ring
     moved between live replicas by a handoff: their new replica answers 503 and asks
     the holder to let go, Envoy retries the call on the holder, the holder saves the
     session and gives up its lease once idle, and the session then settles on its new
     replica (checked: served there).
Which replica served a request is read from each replica's own /metrics counters.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
MODEL = "rwkvx-embedded-demo-bytes"  # the default with no --model (server/embedded/)


def free_port(hosts):
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port")


def http(url, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json",
                                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def counters(host, http_port):
    """(completions, other-path, grpc, session calls answered 200, handoffs) counts of one
    replica."""
    try:
        _, text = http(f"http://{host}:{http_port}/metrics", timeout=5)
    except OSError:
        return None
    def total(pattern):
        return sum(float(v) for v in re.findall(pattern + r"[^\n]*\} ([0-9.e+]+)", text))
    return (total(r'rwkvx_http_requests_total\{[^}]*path="/v1/completions"'),
            total(r'rwkvx_http_requests_total\{[^}]*path="other"'),
            total(r'rwkvx_grpc_requests_total\{[^}]*method="ListModels"'),
            # Session calls answered 200 (a refusal, 503, is retried on another replica).
            total(r'rwkvx_http_requests_total\{(?=[^}]*path="/v1/sessions")(?=[^}]*code="200")[^}]*'),
            sum(float(v) for v in re.findall(r"(?m)^rwkvx_session_handoffs_total ([0-9.e+]+)", text)))


def served_by(live, http_port, fn, index):
    """Runs fn (one request) and returns the one replica whose counter moved. A server
    may count a request just after its response is sent: wait for the count (<= 5 s)."""
    before = {h: counters(h, http_port) for h in live}
    fn()
    deadline = time.time() + 5
    while True:
        after = {h: counters(h, http_port) for h in live}
        hit = [h for h in live if after[h][index] > before[h][index]]
        if len(hit) == 1 and after[hit[0]][index] == before[hit[0]][index] + 1:
            return hit[0]
        if len(hit) > 1 or time.time() > deadline:
            raise AssertionError(f"request reached {hit}, want exactly one replica")
        time.sleep(0.02)


CLIENT_503 = []  # the 503s that reached this client (Envoy's own retries did not help)


def session_call(front_http, sid, path, body=None):
    """One call of named session `sid` through the front proxy (routed by its path), retried
    as a client would while the answer is 503 (Retry-After): Envoy retries a 503 on other
    replicas itself, and a handoff may take a moment."""
    for _ in range(60):
        code, text = http(f"http://127.0.0.1:{front_http}/v1/sessions/{sid}{path}", body)
        if code != 503:
            break
        CLIENT_503.append(sid)
        time.sleep(1)
    assert code == 200, (sid, code, text)
    return json.loads(text)


def session_turn(front_http, sid, prompt):
    """One greedy completion of named session `sid`: the tokens with their logprobs and
    top-5 alternatives."""
    return session_call(front_http, sid, "/completions",
                        {"prompt": prompt, "max_tokens": 6, "temperature": 0, "logprobs": 5,
                         "ignore_eos": True})["choices"][0]["logprobs"]


def ring_without(admin, victim):
    """Waits until the front proxy's view has `victim` unhealthy (out of the ring)."""
    deadline = time.time() + 60
    while True:
        _, text = http(f"http://127.0.0.1:{admin}/clusters", timeout=2)
        if not re.search(r"rwkvx::%s:\d+::health_flags::healthy" % re.escape(victim), text):
            return
        assert time.time() < deadline, f"Envoy still has {victim} healthy 60 s after its SIGTERM"
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--rwkvx", required=True)
    ap.add_argument("--front", required=True)
    ap.add_argument("--pod-router", required=True)
    ap.add_argument("--sessions", type=int, default=24)
    a = ap.parse_args()

    http_port, grpc_port, router_port = (free_port(HOSTS) for _ in range(3))
    front_http, front_grpc = (free_port(["127.0.0.1"]) for _ in range(2))

    # Front proxy: the headless Service's DNS answer becomes the three static hosts.
    front = yaml.safe_load(open(a.front))
    for cl in front["static_resources"]["clusters"]:
        del cl["cluster_type"]
        cl["type"] = "STATIC"
        cl["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
            {"endpoint": {"address": {"socket_address": {"address": h, "port_value": router_port}}}}
            for h in HOSTS]
    ports = {"http": front_http, "grpc": front_grpc}
    for lis in front["static_resources"]["listeners"]:
        lis["address"]["socket_address"].update(address="127.0.0.1", port_value=ports[lis["name"]])

    tmp = tempfile.mkdtemp(prefix="envoy-affinity-")
    configs = {"front": front}
    # One pod router per replica: listens on the replica's address, forwards to its server.
    for h in HOSTS:
        r = yaml.safe_load(open(a.pod_router))
        r["static_resources"]["listeners"][0]["address"]["socket_address"].update(
            address=h, port_value=router_port)
        for cl in r["static_resources"]["clusters"]:
            sa = cl["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            sa.update(address=h, port_value={"local_http": http_port, "local_grpc": grpc_port}[cl["name"]])
        configs[h] = r
    admin_ports = {}
    for name, cfg in configs.items():
        admin_ports[name] = free_port(["127.0.0.1"])
        cfg["admin"]["address"]["socket_address"]["port_value"] = admin_ports[name]
        yaml.safe_dump(cfg, open(os.path.join(tmp, f"{name}.yaml"), "w"))
    admin = admin_ports["front"]

    procs = {}
    log = open(os.path.join(tmp, "log.txt"), "w")
    try:
        for h in HOSTS:
            procs[h] = subprocess.Popen(
                [a.rwkvx, "serve", "--host", h, "--http-port", str(http_port), "--grpc-port",
                 str(grpc_port), "--threads", "1", "--drain-grace", "2",
                 "--session-dir", os.path.join(tmp, "sessions")],
                stdout=log, stderr=subprocess.STDOUT)
        for h in HOSTS:  # all up before Envoy's first health check
            for _ in range(100):
                try:
                    if http(f"http://{h}:{http_port}/ready", timeout=1)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.1)
        for name in configs:
            procs[f"envoy-{name}"] = subprocess.Popen(
                [a.envoy, "-c", os.path.join(tmp, f"{name}.yaml"), "--base-id",
                 str(admin_ports[name]), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        text = ""
        while True:
            try:
                _, text = http(f"http://127.0.0.1:{admin}/clusters", timeout=2)
                healthy = len(re.findall(r"rwkvx::127\.0\.0\.\d:\d+::health_flags::healthy", text))
                if healthy == 3:
                    # The admin view changes first; give the workers' rings a moment.
                    time.sleep(2)
                    break
            except OSError:
                pass
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead or time.time() > deadline:
                print(re.sub(r"(?m)^(?!rwkvx::.*(health_flags|rq_total)).*\n", "", text))
                raise AssertionError(f"exited: {dead}; or Envoy did not see 3 healthy replicas in 60 s")
            time.sleep(0.5)

        def complete(sid):
            def go():
                code, body = http(f"http://127.0.0.1:{front_http}/v1/completions",
                                  {"model": MODEL, "prompt": "hi", "max_tokens": 2},
                                  {"x-session-id": sid})
                assert code == 200, (code, body)
            return go

        sessions = [f"session-{i}" for i in range(a.sessions)]
        home = {}
        for sid in sessions:
            got = {served_by(HOSTS, http_port, complete(sid), 0) for _ in range(3)}
            assert len(got) == 1, f"{sid} reached {got}"
            home[sid] = got.pop()
        spread = {h: sum(1 for v in home.values() if v == h) for h in HOSTS}
        assert all(spread.values()), f"sessions not spread over all replicas: {spread}"
        print(f"affinity: {a.sessions} sessions x 3 requests, each on one replica; spread {spread}")

        for sid in sessions[:6]:
            def path_req(sid=sid):
                http(f"http://127.0.0.1:{front_http}/v1/sessions/{sid}/generate", {})
            h = served_by(HOSTS, http_port, path_req, 1)
            assert h == home[sid], f"/v1/sessions/{sid}: {h}, header routing: {home[sid]}"
        print("affinity: /v1/sessions/<id> paths reach the replica of x-session-id <id>")

        try:
            import grpc
        except ImportError:
            print("affinity: gRPC part skipped (grpcio not importable)")
        else:
            with grpc.insecure_channel(f"127.0.0.1:{front_grpc}") as ch:
                # ListModelsRequest is empty: its encoding is b"".
                list_models = ch.unary_unary("/rwkvx.v1.Inference/ListModels",
                                             request_serializer=lambda _: b"",
                                             response_deserializer=lambda b: b)
                for sid in sessions[:6]:
                    def rpc(sid=sid):
                        list_models(None, timeout=10, metadata=[("x-session-id", sid)])
                    h = served_by(HOSTS, http_port, rpc, 2)
                    assert h == home[sid], f"gRPC {sid}: {h}, HTTP: {home[sid]}"
            print("affinity: gRPC calls with x-session-id metadata reach the same replicas")

        victim = max(spread, key=spread.get)
        # A named session for every key, all with one history: every turn of every session
        # must give the same tokens and logprobs, wherever it runs.
        turns = [" and then", " the river", " ran on"]
        for sid in sessions:
            code, body = http(f"http://127.0.0.1:{front_http}/v1/sessions",
                              {"session_id": sid, "prompt": "Story:"}, {"x-session-id": sid})
            assert code == 200, (sid, code, body)
        first = [session_turn(front_http, sid, turns[0]) for sid in sessions]
        assert all(f == first[0] for f in first), "one history, different turns before the stop"
        procs[victim].send_signal(signal.SIGTERM)
        procs[victim].wait(timeout=30)
        live = [h for h in HOSTS if h != victim]
        ring_without(admin, victim)
        # Envoy's workers take the new ring a moment after its main thread: map the keys
        # until two passes agree.
        now, prev = None, {}
        for _ in range(20):
            now = {sid: served_by(live, http_port, complete(sid), 0) for sid in sessions}
            if now == prev:
                break
            prev = now
        else:
            raise AssertionError("the ring did not settle after the stop")
        of_victim = [s for s in sessions if home[s] == victim]
        moved = [s for s in sessions if home[s] != victim and now[s] != home[s]]
        print(f"failover: replica {victim} stopped and out of the ring; its {len(of_victim)} sessions "
              f"served by the others; the ring moved {len(moved)} of the other {len(sessions) - len(of_victim)} "
              f"between the live replicas ({', '.join(moved) or 'none'})")
        second = [session_turn(front_http, sid, turns[1]) for sid in sessions]
        assert all(t == second[0] for t in second), "a named session did not continue exactly after the stop"
        print(f"failover: all {len(sessions)} named sessions continued exactly: {len(of_victim)} from "
              f"{victim}'s SIGTERM save, {len(moved)} handed over between live replicas")
        # The moved ones settle on their new replica: once the holder has let go, the new
        # replica serves them itself (a GET changes nothing: it may be repeated).
        for sid in moved:
            deadline = time.time() + 60
            while served_by(live, http_port, lambda sid=sid: session_call(front_http, sid, ""), 3) != now[sid]:
                assert time.time() < deadline, f"{sid} never settled on {now[sid]}"
                time.sleep(0.1)
        third = {}
        for sid in sessions:
            def turn(sid=sid):
                third[sid] = session_turn(front_http, sid, turns[2])
            h = served_by(live, http_port, turn, 3)
            assert h == now[sid], f"{sid}: turn served by {h}, its replica is {now[sid]}"
        assert all(t == third[sessions[0]] for t in third.values()), "a session did not continue exactly"
        handoffs = sum(counters(h, http_port)[4] for h in live)
        assert handoffs >= len(moved), f"{handoffs} handoffs for {len(moved)} moved sessions"
        print(f"failover: the {len(moved)} moved sessions settled on their new replicas ({int(handoffs)} "
              "handoffs); every session's next turn was served by its ring replica and continued exactly; "
              f"503s that reached the client: {len(CLIENT_503)}")
        _, stats = http(f"http://127.0.0.1:{admin}/stats", timeout=5)
        ejected = re.findall(r"cluster\.rwkvx\.outlier_detection\.ejections_enforced_total: (\d+)", stats)
        assert ejected == ["0"], f"Envoy ejected a replica for its answers: {ejected}"
        print("envoy affinity: ok")
        return 0
    except BaseException:
        for name, port in admin_ports.items():  # Envoy's view, for the failure report
            try:
                _, text = http(f"http://127.0.0.1:{port}/stats", timeout=2)
                keep = [ln for ln in text.splitlines() if re.search(
                    r"health_check\.(failure|network_failure|verify_cluster|healthy)|upstream_rq_retry|"
                    r"upstream_cx_destroy_remote|upstream_rq_5xx|upstream_rq_timeout|membership_healthy|"
                    r"upstream_cx_connect_fail|upstream_rq_pending_failure_eject|outlier_detection.ejections_enforced_total",
                    ln) and not ln.endswith(": 0")]
                print(f"--- envoy {name}:", *keep, sep="\n  ")
            except OSError:
                pass
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
        if sys.exc_info()[0] is not None:
            print(open(os.path.join(tmp, "log.txt")).read()[-4000:])


if __name__ == "__main__":
    sys.exit(main())
