#!/usr/bin/env python3
"""Load test (issue 8): many concurrent SSE and gRPC streams against `rwkvx serve`.

Starts the server (embedded random-weight model, CPU backend, loopback only), then opens
--sse (default 1000) streaming /v1/completions requests (aiohttp) and --grpc (default 200)
streaming Generate RPCs (grpcio's aio API) at once: mixed short and long prompts, some
clients that read slowly, some that vanish after their first event. The server's queue
is sized so that some requests are refused, and once it is full 25 SSE + 25 gRPC more
requests probe the refusal path. Then it checks:

  * the server stays up (/health), and every session, running and waiting count
    returns to 0;
  * every stream that was not dropped on purpose either finished complete and
    well-formed (SSE: HTTP 200, JSON events, one finish_reason, [DONE], usage consistent;
    gRPC: status OK, one final event, usage == tokens streamed, + 1 for a stop token) or
    was refused with 429 + Retry-After / RESOURCE_EXHAUSTED; anything else counts as
    lost (must be 0);
  * refusals are prompt: each came back within --refuse-bound seconds (a hang detector);
  * the server's RSS (/proc/PID/status) gives back at least half of its rise once idle,
    and does not grow over a second, smaller round (no per-request leak).

Prints a table (TTFT / ITL p50 and p99, peak RSS, counts) and writes JSON
(default tests/load/results/latest.json, not committed). Exit status 1 when a check fails.

    .venv/bin/python tests/load/load_test.py --bin build/rwkvx
"""
import argparse
import asyncio
import json
import os
import pathlib
import random
import resource
import subprocess
import sys
import tempfile
import time

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def check_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft < need:
        sys.exit(f"load test: needs {need} file descriptors, ulimit -n allows {soft} "
                 f"(hard limit {hard}); raise it (ulimit -n {need})")
    return soft


def grpc_modules():
    from grpc_tools import protoc
    import grpc_tools
    out = tempfile.mkdtemp(prefix="rwkvx-load-stubs-")
    proto_dir = ROOT / "proto"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(proto_dir)) for p in (proto_dir / "rwkvx" / "v1").glob("*.proto")]
    if protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *files]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    from rwkvx.v1 import inference_pb2, inference_pb2_grpc
    return inference_pb2, inference_pb2_grpc


class Plan:
    """What one client does: prompt, max_tokens, behaviour (normal, slow, vanish)."""

    def __init__(self, rng, i, args):
        self.long = rng.random() < args.long_share
        n = args.long_prompt if self.long else args.short_prompt
        self.prompt = (f"client {i}: " + "the quick brown fox jumps over the lazy dog " * 40)[:n]
        self.max_tokens = args.long_tokens if self.long else args.short_tokens
        r = rng.random()
        self.kind = "vanish" if r < args.vanish_share else (
            "slow" if r < args.vanish_share + args.slow_share else "normal")


def check_sse(events, plan):
    """Returns an error string, or None when the stream is complete and well-formed."""
    if not events or events[-1] != "[DONE]":
        return "no [DONE] at the end"
    body = events[:-1]
    finishes = [e["choices"][0]["finish_reason"] for e in body
                if e.get("choices") and e["choices"][0].get("finish_reason")]
    if len(finishes) != 1 or finishes[0] not in ("length", "stop"):
        return f"finish reasons {finishes}"
    usage = [e["usage"] for e in body if e.get("usage")]
    if len(usage) != 1:
        return "no usage event"
    ct = usage[0]["completion_tokens"]
    if not (1 <= ct <= plan.max_tokens) or (finishes[0] == "length" and ct != plan.max_tokens):
        return f"completion_tokens {ct} for max_tokens {plan.max_tokens} ({finishes[0]})"
    return None


async def sse_client(session, url, plan, out, refuse_bound):
    body = {"prompt": plan.prompt, "max_tokens": plan.max_tokens, "stream": True,
            "temperature": 1.0, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    rec = {"api": "sse", "kind": plan.kind, "long": plan.long}
    try:
        async with session.post(url + "/v1/completions", json=body) as r:
            if r.status == 429:
                await r.read()
                rec.update(outcome="refused", refuse_s=time.perf_counter() - t0,
                           retry_after=r.headers.get("Retry-After") is not None)
                out.append(rec)
                return
            if r.status != 200 or not r.headers.get("Content-Type", "").startswith(
                    "text/event-stream"):
                rec.update(outcome="lost", why=f"HTTP {r.status}: {(await r.text())[:200]}")
                out.append(rec)
                return
            events, stamps = [], []
            async for raw in r.content:
                line = raw.strip()
                if not line:
                    continue
                if not line.startswith(b"data: "):
                    rec.update(outcome="lost", why=f"not an SSE data line: {line[:80]!r}")
                    out.append(rec)
                    return
                data = line[6:]
                if data == b"[DONE]":
                    events.append("[DONE]")
                    break
                ev = json.loads(data)
                events.append(ev)
                if ev.get("choices"):
                    stamps.append(time.perf_counter())
                if plan.kind == "vanish" and stamps:
                    r.connection.transport.abort() if r.connection else None
                    rec.update(outcome="vanished")
                    out.append(rec)
                    return
                if plan.kind == "slow":
                    await asyncio.sleep(0.05)
            err = check_sse(events, plan)
            rec.update(outcome="lost" if err else "served", why=err,
                       ttft=stamps[0] - t0 if stamps else None,
                       itl=[b - a for a, b in zip(stamps, stamps[1:])])
            out.append(rec)
    except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as e:
        rec.update(outcome="lost", why=f"{type(e).__name__}: {e}")
        out.append(rec)


async def grpc_client(stub, pb, grpc, plan, out):
    req = pb.GenerateRequest(text=plan.prompt, max_tokens=plan.max_tokens)
    t0 = time.perf_counter()
    rec = {"api": "grpc", "kind": plan.kind, "long": plan.long}
    call = stub.Generate(req, timeout=600)
    stamps, evs = [], []
    try:
        async for ev in call:
            evs.append(ev)
            if ev.tokens:
                stamps.append(time.perf_counter())
            if plan.kind == "vanish" and stamps:
                call.cancel()
                rec.update(outcome="vanished")
                out.append(rec)
                return
            if plan.kind == "slow":
                await asyncio.sleep(0.05)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not evs:
            rec.update(outcome="refused", refuse_s=time.perf_counter() - t0, retry_after=True)
        else:
            rec.update(outcome="lost", why=f"{e.code()}: {e.details()}")
        out.append(rec)
        return
    finishes = [e.finish_reason for e in evs if e.finish_reason]
    ntok = sum(len(e.tokens) for e in evs)
    err = None
    if len(finishes) != 1 or finishes[0] not in ("length", "stop") or evs[-1].finish_reason == "":
        err = f"finish reasons {finishes}"
    else:
        # A stop token (end of text) counts as generated but is not streamed.
        extra = evs[-1].usage.completion_tokens - ntok
        if not (extra == 0 or (extra == 1 and finishes[0] == "stop")) or \
                not (1 <= evs[-1].usage.completion_tokens <= plan.max_tokens):
            err = f"usage {evs[-1].usage.completion_tokens} vs {ntok} tokens streamed"
    rec.update(outcome="lost" if err else "served", why=err,
               ttft=stamps[0] - t0 if stamps else None,
               itl=[b - a for a, b in zip(stamps, stamps[1:])])
    out.append(rec)


async def sample_rss(pid, samples, stop):
    while not stop.is_set():
        try:
            samples.append((time.perf_counter(), rss_bytes(pid)))
        except OSError:
            return
        await asyncio.sleep(0.1)


async def metric(session, url, key):
    async with session.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def poll(cond, what, timeout):
    end = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def run(args, proc, ports, pb, pbg):
    import grpc
    url = f"http://127.0.0.1:{ports['http_port']}"
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=args.client_timeout)
    rng = random.Random(args.seed)
    failures = []
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session, \
            grpc.aio.insecure_channel(f"127.0.0.1:{ports['grpc_port']}") as ch:
        stub = pbg.InferenceStub(ch)

        async def idle():
            return all([await metric(session, url, k) == 0 for k in
                        ("rwkvx_sessions_active", "rwkvx_requests_running",
                         "rwkvx_requests_waiting")])

        # Warm-up (allocator arenas, thread pools), then the idle baseline. Both protocols:
        # gRPC grows its thread pool (and glibc an arena per thread) under concurrent
        # streams, memory it keeps on purpose; without gRPC in the warm-up the baseline
        # missed it and the give-back check below failed by a few MiB on some runs.
        warm = []
        n_grpc_warm = args.warmup * args.grpc // max(1, args.sse + args.grpc) + 1
        await asyncio.gather(*[sse_client(session, url, Plan(rng, -i, args), warm, 0)
                               for i in range(args.warmup)],
                             *[grpc_client(stub, pb, grpc, Plan(rng, -args.warmup - i, args), warm)
                               for i in range(n_grpc_warm)])
        await poll(idle, "idle after warm-up", 120)
        baseline = rss_bytes(proc.pid)

        async def overflow_probe(out, first):
            """Once the queue is full, 25 SSE + 25 gRPC more: they should be refused."""
            async def full():
                return await metric(session, url, "rwkvx_requests_waiting") >= args.max_queue
            try:
                await poll(full, "a full queue", 120)
            except AssertionError:
                print("overflow probe: the queue never filled; skipped")
                return
            await asyncio.gather(
                *[sse_client(session, url, Plan(rng, first + i, args), out, args.refuse_bound)
                  for i in range(25)],
                *[grpc_client(stub, pb, grpc, Plan(rng, first + 25 + i, args), out)
                  for i in range(25)])

        async def load_round(n_sse, n_grpc, first, probe=False):
            samples, stop = [], asyncio.Event()
            sampler = asyncio.create_task(sample_rss(proc.pid, samples, stop))
            out = []
            t0 = time.perf_counter()
            tasks = [sse_client(session, url, Plan(rng, first + i, args), out, args.refuse_bound)
                     for i in range(n_sse)]
            tasks += [grpc_client(stub, pb, grpc, Plan(rng, first + n_sse + i, args), out)
                      for i in range(n_grpc)]
            rng.shuffle(tasks)
            if probe:
                tasks.append(overflow_probe(out, first + n_sse + n_grpc))
            await asyncio.gather(*tasks)
            wall = time.perf_counter() - t0
            await poll(idle, "the server to be idle after the load", 120)
            stop.set()
            await sampler
            return out, wall, max([b for _, b in samples] + [baseline])

        async def settled(limit):
            """RSS once it is at most `limit`, or after 30 s (the server trims when idle)."""
            end = time.monotonic() + 30
            v = rss_bytes(proc.pid)
            while v > limit and time.monotonic() < end:
                await asyncio.sleep(0.5)
                v = rss_bytes(proc.pid)
            return v

        out, wall, peak = await load_round(args.sse, args.grpc, 0, probe=True)
        # Memory returns toward the baseline: at least half of the rise is given back
        # (glibc keeps some freed memory as fragmentation)...
        allowed = baseline + (peak - baseline) // 2 + (32 << 20)
        after = await settled(allowed)
        if after > allowed:
            failures.append(f"RSS {after >> 20} MiB after the load, baseline {baseline >> 20} "
                            f"MiB, peak {peak >> 20} MiB (allowed {allowed >> 20} MiB)")
        # ...and does not grow with more load of the same kind (no leak per request).
        n2 = (max(1, int(args.sse * args.second_round)), int(args.grpc * args.second_round))
        out2, _, _ = await load_round(n2[0], n2[1], args.sse + args.grpc)
        after2 = await settled(after + (16 << 20))
        if after2 > after + (16 << 20):
            failures.append(f"RSS grew from {after >> 20} to {after2 >> 20} MiB over a second "
                            f"round of {sum(n2)} streams")
        for r in out2:
            if r["outcome"] == "lost":
                failures.append(f"second round: lost stream ({r['kind']}): {r.get('why')}")
        async with session.get(url + "/health") as r:
            if r.status != 200:
                failures.append(f"/health {r.status} after the load")
        finished = {}
        async with session.get(url + "/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith("rwkvx_requests_finished_total{"):
                    k, v = line.rsplit(" ", 1)
                    finished[k.split('"')[1]] = float(v)
    return out, wall, baseline, peak, (after, after2), failures, finished


def summarize(out, args, wall, baseline, peak, after, finished, failures):
    res = {"config": vars(args).copy(), "wall_s": round(wall, 2),
           "rss_baseline_mib": round(baseline / 2**20, 1), "rss_peak_mib": round(peak / 2**20, 1),
           "rss_after_mib": round(after[0] / 2**20, 1),
           "rss_after_second_round_mib": round(after[1] / 2**20, 1),
           "server_finish_reasons": finished,
           "apis": {}}
    for api in ("sse", "grpc"):
        rs = [r for r in out if r["api"] == api]
        served = [r for r in rs if r["outcome"] == "served"]
        refused = [r for r in rs if r["outcome"] == "refused"]
        lost = [r for r in rs if r["outcome"] == "lost"]
        ttft = [r["ttft"] for r in served if r.get("ttft") is not None]
        itl = [x for r in served for x in r.get("itl", [])]
        ref = [r["refuse_s"] for r in refused]
        for r in refused:
            if r["refuse_s"] > args.refuse_bound:
                failures.append(f"{api}: a refusal took {r['refuse_s']:.1f}s")
            if not r["retry_after"]:
                failures.append(f"{api}: a 429 without Retry-After")
        for r in lost[:5]:
            failures.append(f"{api}: lost stream ({r['kind']}): {r.get('why')}")
        if lost:
            failures.append(f"{api}: {len(lost)} streams lost")
        ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
        res["apis"][api] = {
            "clients": len(rs), "served": len(served), "refused": len(refused),
            "vanished": sum(r["outcome"] == "vanished" for r in rs), "lost": len(lost),
            "slow_served": sum(r["kind"] == "slow" for r in served),
            "ttft_p50_ms": ms(pct(ttft, 50)), "ttft_p99_ms": ms(pct(ttft, 99)),
            "itl_p50_ms": ms(pct(itl, 50)), "itl_p99_ms": ms(pct(itl, 99)),
            "refuse_p50_ms": ms(pct(ref, 50)), "refuse_p99_ms": ms(pct(ref, 99))}
    if len(out) < args.sse + args.grpc:
        failures.append(f"{args.sse + args.grpc - len(out)} clients reported nothing")
    res["failures"] = failures
    return res


def print_table(res):
    cols = ["clients", "served", "refused", "vanished", "lost", "ttft_p50_ms", "ttft_p99_ms",
            "itl_p50_ms", "itl_p99_ms", "refuse_p99_ms"]
    print("| api | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for api, a in res["apis"].items():
        print(f"| {api} | " + " | ".join(str(a[c]) for c in cols) + " |")
    print(f"wall {res['wall_s']} s; server RSS baseline {res['rss_baseline_mib']} MiB, "
          f"peak {res['rss_peak_mib']} MiB, after {res['rss_after_mib']} MiB, after a second "
          f"round {res['rss_after_second_round_mib']} MiB")
    print(f"server finish reasons: {res['server_finish_reasons']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("RWKVX_BIN", str(ROOT / "build" / "rwkvx")))
    ap.add_argument("--sse", type=int, default=1000)
    ap.add_argument("--grpc", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=64)
    ap.add_argument("--short-prompt", type=int, default=16, help="bytes (= tokens)")
    ap.add_argument("--long-prompt", type=int, default=256)
    ap.add_argument("--long-share", type=float, default=0.12)
    ap.add_argument("--short-tokens", type=int, default=4)
    ap.add_argument("--long-tokens", type=int, default=12)
    ap.add_argument("--slow-share", type=float, default=0.1)
    ap.add_argument("--vanish-share", type=float, default=0.1)
    ap.add_argument("--max-sessions", type=int, default=128)
    ap.add_argument("--max-queue", type=int, default=1000,
                    help="the server's queue; below sse+grpc-max_sessions some are refused")
    ap.add_argument("--second-round", type=float, default=0.2,
                    help="size of the second round (share of --sse/--grpc): RSS must not grow")
    ap.add_argument("--refuse-bound", type=float, default=30.0,
                    help="a refusal slower than this fails the run (hang detector)")
    ap.add_argument("--client-timeout", type=float, default=900.0)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "tests" / "load" / "results" / "latest.json"))
    args = ap.parse_args()

    check_fd_limit(2 * (args.sse + args.grpc + args.warmup) + 512)
    pb, pbg = grpc_modules()
    tmp = tempfile.mkdtemp(prefix="rwkvx-load-")
    port_file = os.path.join(tmp, "ports.json")
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [args.bin, "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
         "--port-file", port_file, "--max-sessions", str(args.max_sessions),
         "--max-queue", str(args.max_queue), "--max-batch-tokens", "1024",
         # The RSS check below reads memory kept after the load as a leak; the prefix cache
         # (on by default) keeps up to its budget on purpose.
         "--prefix-cache-bytes", "0"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > end:
                sys.exit("the server did not start:\n" + open(log_path).read()[-4000:])
            time.sleep(0.05)
        with open(port_file) as f:
            ports = json.load(f)
        out, wall, baseline, peak, after, failures, finished = asyncio.run(
            run(args, proc, ports, pb, pbg))
        if proc.poll() is not None:
            failures.append(f"the server exited ({proc.returncode})")
    finally:
        if proc.poll() is None:
            proc.terminate()
        rc = proc.wait(timeout=120)
        log.close()
    text = open(log_path, "rb").read().decode("utf-8", "replace")
    if rc != 0:
        failures.append(f"the server exited {rc} after SIGTERM")
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer"):
        if marker in text:
            failures.append(f"sanitizer report in the server log: {marker}")
    res = summarize(out, args, wall, baseline, peak, after, finished, failures)
    print_table(res)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("load test passed")


if __name__ == "__main__":
    main()
