#!/usr/bin/env python3
"""A long named session built through the server's API, then generation at checkpoints.

Creates a named session, appends token ids in chunks (HTTP, streamed append with progress
events) until it holds each checkpoint's length (default 1K, 64K, 256K, 1M tokens), and at
each checkpoint generates --gen tokens from the session (streamed completion), recording
the inter-token latency (p50/p90 of the SSE event gaps) and the session's memory
(`bytes`, `kv_tokens` from GET /v1/sessions/{id}). Prints a table, writes JSON.
Measures; asserts nothing about time.

  python3 bench/long_session/long_session.py --bin build/rwkvx \
      --server-args "--backend cuda --model m.pth" --out results.json
Only `requests` is needed (the device image has it).
"""
import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

import requests


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(s[-1], 1)
    return int(s[:-1] if s[-1] in "KM" else s) * mult


def sse_events(resp):
    for line in resp.iter_lines():
        if not line or not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            return
        yield time.perf_counter(), json.loads(data)


def start_server(binary, args):
    tmp = tempfile.mkdtemp()
    port_file = os.path.join(tmp, "ports.json")
    log = open(os.path.join(tmp, "serve.log"), "w")
    cmd = [binary, "serve", "--http-port", "0", "--grpc-port", "0", "--port-file", port_file] + args.split()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited {proc.returncode}; log: {log.name}")
        if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
            try:
                ports = json.load(open(port_file))
                return proc, f"http://127.0.0.1:{ports['http_port']}", log.name
            except (ValueError, KeyError):
                pass
        time.sleep(0.1)
    sys.exit("server did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/rwkvx")
    ap.add_argument("--server-args", default="")
    ap.add_argument("--url", help="a running server instead of --bin")
    ap.add_argument("--checkpoints", default="1K,64K,256K,1M")
    ap.add_argument("--chunk", type=int, default=32768, help="tokens per append")
    ap.add_argument("--gen", type=int, default=64, help="tokens generated at each checkpoint")
    ap.add_argument("--id-range", type=int, default=256, help="appended ids are drawn from [1, N)")
    ap.add_argument("--label", default="", help="names the machine/card in the JSON")
    ap.add_argument("--out", default="bench/long_session/results.json")
    a = ap.parse_args()

    proc = None
    url = a.url
    if not url:
        proc, url, log = start_server(a.bin, a.server_args)
        print(f"server {url} (log {log})", flush=True)
    rng = random.Random(1)
    s = requests.Session()
    r = s.post(url + "/v1/sessions", json={"session_id": "long", "prompt": [rng.randrange(1, a.id_range)]})
    r.raise_for_status()
    held = 1
    rows = []
    t_start = time.perf_counter()
    for cp in [parse_size(x) for x in a.checkpoints.split(",")]:
        t0 = time.perf_counter()
        appended = 0
        while held < cp:
            n = min(a.chunk, cp - held)
            ids = [rng.randrange(1, a.id_range) for _ in range(n)]
            with s.post(url + "/v1/sessions/long/append", json={"prompt": ids, "stream": True},
                        stream=True) as resp:
                resp.raise_for_status()
                last = None
                for _, ev in sse_events(resp):
                    if "error" in ev:
                        sys.exit(f"append failed: {ev}")
                    last = ev
                assert last and last["tokens_fed"] == n, last
            held += n
            appended += n
        fill_s = time.perf_counter() - t0
        stamps = []
        body = {"prompt": "", "max_tokens": a.gen, "stream": True, "ignore_eos": True, "temperature": 0}
        with s.post(url + "/v1/sessions/long/completions", json=body, stream=True) as resp:
            resp.raise_for_status()
            for t, ev in sse_events(resp):
                if ev.get("choices"):
                    stamps.append(t)
        held += a.gen
        gaps = sorted((b - c) * 1000 for c, b in zip(stamps, stamps[1:]))
        info = s.get(url + "/v1/sessions/long").json()
        row = {"tokens": held, "checkpoint": cp, "append_s": round(fill_s, 2),
               "append_tok_per_s": round(appended / fill_s, 1) if appended and fill_s > 0 else None,
               "itl_ms_p50": round(statistics.median(gaps), 3) if gaps else None,
               "itl_ms_p90": round(gaps[int(0.9 * (len(gaps) - 1))], 3) if gaps else None,
               "session_mib": round(info.get("bytes", 0) / 2**20, 1), "kv_tokens": info.get("kv_tokens")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if proc:
        proc.terminate()
        proc.wait(timeout=120)
    cols = ["tokens", "append_s", "append_tok_per_s", "itl_ms_p50", "itl_ms_p90", "session_mib", "kv_tokens"]
    print(" | ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r[c]):>16}" for c in cols))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump({"label": a.label, "host": platform.node(), "server_args": a.server_args, "chunk": a.chunk,
               "gen": a.gen, "total_s": round(time.perf_counter() - t_start, 1), "rows": rows},
              open(a.out, "w"), indent=1)
    print("JSON:", a.out)


if __name__ == "__main__":
    main()
