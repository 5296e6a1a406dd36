#!/usr/bin/env python3
"""Load generator for rwkvx serve (asyncio + aiohttp, streaming /v1/completions).

Reports per concurrency level: time to first token (TTFT), inter-token latency (ITL),
request throughput and generated-token throughput; prints a table and writes JSON.
By default it starts the server itself (the embedded random model on the CPU backend):

    .venv/bin/python bench/serve/loadgen.py --bin build/rwkvx --out bench/serve/results.json

or point it at a running server with --url http://127.0.0.1:8080.
No thresholds: this measures, it does not judge.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


async def one_request(session, url, prompt, max_tokens, seed):
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 1.0,
            "seed": seed, "ignore_eos": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, stamps, tokens, status = None, [], 0, None
    async with session.post(url + "/v1/completions", json=body) as r:
        status = r.status
        if r.status != 200:
            await r.read()
            return {"ok": False, "status": status}
        async for raw in r.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            now = time.perf_counter()
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ev.get("choices") and ev["choices"][0].get("text"):
                if ttft is None:
                    ttft = now - t0
                stamps.append(now)
    end = time.perf_counter()
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ok": True, "ttft": ttft, "itl": itl, "latency": end - t0, "tokens": tokens}


async def run_streams(url, concurrency, ids, prompt_len, max_tokens):
    """Requests `ids` over `concurrency` streams; returns (results, t0, t1) on the
    system-wide monotonic clock (time.perf_counter is CLOCK_MONOTONIC on Linux)."""
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    results = []
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        queue = list(ids)

        async def worker(wid):
            while queue:
                i = queue.pop()
                prompt = (f"request {i}: " + "lorem ipsum " * prompt_len)[:prompt_len]
                results.append(await one_request(session, url, prompt, max_tokens, i))

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        t1 = time.perf_counter()
    return results, t0, t1


def client_proc(args):
    """One client process of --procs: waits at the barrier, runs its share, returns its
    results, its start and end, and the CPU seconds it used."""
    url, concurrency, ids, prompt_len, max_tokens = args
    BARRIER.wait()
    c0 = time.process_time()
    results, t0, t1 = asyncio.run(run_streams(url, concurrency, ids, prompt_len, max_tokens))
    return results, t0, t1, time.process_time() - c0


BARRIER = None


def _init(barrier):
    global BARRIER
    BARRIER = barrier


def run_level(url, concurrency, n_requests, prompt_len, max_tokens, procs=1):
    procs = max(1, min(procs, concurrency))
    if procs == 1:
        c0 = time.process_time()
        results, t0, t1 = asyncio.run(run_streams(url, concurrency, range(n_requests), prompt_len, max_tokens))
        parts = [(results, t0, t1, time.process_time() - c0)]
    else:  # each process takes an equal share of the streams and of the requests
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(procs)
        jobs = [(url, concurrency // procs + (k < concurrency % procs), list(range(n_requests))[k::procs],
                 prompt_len, max_tokens) for k in range(procs)]
        with ctx.Pool(procs, initializer=_init, initargs=(barrier,)) as pool:
            parts = pool.map(client_proc, jobs)
    results = [r for p in parts for r in p[0]]
    wall = max(p[2] for p in parts) - min(p[1] for p in parts)
    # How busy the busiest client process was: near 1.0 means the client, not the server,
    # may be what limits the figures.
    client_busy = max(p[3] / max(1e-9, p[2] - p[1]) for p in parts)
    ok = [r for r in results if r["ok"]]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    itl = [x for r in ok for x in r["itl"]]
    toks = sum(r["tokens"] for r in ok)
    ms = lambda v: None if v is None else round(v * 1000, 2)
    return {
        "concurrency": concurrency, "requests": n_requests, "ok": len(ok),
        "failed": len(results) - len(ok), "wall_s": round(wall, 3),
        "client_procs": procs, "client_cpu_busy_max": round(client_busy, 3),
        "req_per_s": round(len(ok) / wall, 3), "gen_tok_per_s": round(toks / wall, 1),
        "ttft_ms_p50": ms(pct(ttft, 50)), "ttft_ms_p90": ms(pct(ttft, 90)),
        "ttft_ms_p99": ms(pct(ttft, 99)),
        "itl_ms_p50": ms(pct(itl, 50)), "itl_ms_p90": ms(pct(itl, 90)),
        "itl_ms_p99": ms(pct(itl, 99)),
        "itl_ms_mean": ms(statistics.mean(itl)) if itl else None,
        "latency_s_p50": round(pct([r["latency"] for r in ok], 50) or 0, 3),
    }


def start_server(binary, extra):
    d = tempfile.mkdtemp(prefix="rwkvx-bench-")
    pf = os.path.join(d, "ports.json")
    log = open(os.path.join(d, "server.log"), "wb")
    p = subprocess.Popen([binary, "serve", "--http-port", "0", "--grpc-port", "-1",
                          "--port-file", pf, *extra], stdout=log, stderr=subprocess.STDOUT)
    end = time.time() + 120
    while time.time() < end:
        if p.poll() is not None:
            sys.exit(f"server exited; see {log.name}")
        try:  # the file may be half written
            with open(pf) as f:
                return p, f"http://127.0.0.1:{json.load(f)['http_port']}"
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("server did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server; default: start --bin")
    ap.add_argument("--bin", default="build/rwkvx")
    ap.add_argument("--server-args", default="--max-sessions 256 --max-queue 1024 --max-batch-tokens 1024",
                    help="extra flags for the server this script starts")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--requests", type=int, default=0, help="per level (default max(16, 2*c))")
    ap.add_argument("--prompt-len", type=int, default=64, help="prompt bytes (byte tokenizer: tokens)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--procs", type=int, default=1,
                    help="client processes sharing each level's streams (at high token rates one Python "
                         "process can be what limits the figures: see client_cpu_busy_max in the JSON)")
    ap.add_argument("--out", default="bench/serve/results.json")
    a = ap.parse_args()
    proc = None
    url = a.url
    if not url:
        proc, url = start_server(a.bin, a.server_args.split())
    try:
        levels = []
        for c in [int(x) for x in a.concurrency.split(",")]:
            n = a.requests or max(16, 2 * c)
            levels.append(run_level(url, c, n, a.prompt_len, a.max_tokens, a.procs))
            print(f"  c={c} done", file=sys.stderr)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
    out = {"url": url if a.url else "(started) " + " ".join(a.server_args.split()),
           "backend": "cpu (embedded random model)" if not a.url else "see server",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "prompt_len": a.prompt_len, "max_tokens": a.max_tokens, "levels": levels}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    cols = ["concurrency", "requests", "failed", "req_per_s", "gen_tok_per_s", "ttft_ms_p50",
            "ttft_ms_p99", "itl_ms_p50", "itl_ms_p99", "client_cpu_busy_max"]
    print(" | ".join(f"{c:>13}" for c in cols))
    for l in levels:
        print(" | ".join(f"{str(l[c]):>13}" for c in cols))
    print(f"JSON: {a.out}")


if __name__ == "__main__":
    main()
