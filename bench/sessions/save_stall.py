#!/usr/bin/env python3
"""How long does saving an idle session to --session-dir stall the other streams?

Starts `rwkvx serve` (the embedded model, CPU) with --session-dir and a short idle timeout,
creates one named session with a long prompt (its KV cache makes the snapshot large), then
streams a long completion from another request and records when each SSE token arrives.
The named session goes idle and is saved to disk while the stream runs. Reported: the
inter-token gaps of the stream over the whole run and inside the save window (from the
moment the session went idle to the moment it reached the disk tier), for every binary
given: run the server before and after a change in the same call for a ratio.

    .venv/bin/python bench/sessions/save_stall.py --bin OLD --bin NEW --json out.json

Prints a table; never asserts on timings.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests


def start(binary, tmp, session_dir, args):
    port_file = os.path.join(tmp, "ports.json")
    log = open(os.path.join(tmp, "server.log"), "ab")
    p = subprocess.Popen([binary, "serve", "--http-port", "0", "--grpc-port", "-1",
                          "--port-file", port_file, "--session-dir", session_dir,
                          "--session-idle-timeout", str(args.idle), "--max-tokens", "1000000",
                          "--max-prompt-tokens", str(args.prompt_bytes + 16),
                          "--max-body-bytes", str(4 * args.prompt_bytes + (1 << 20))],
                         stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if p.poll() is not None:
            raise SystemExit(f"{binary} exited early (see {log.name})")
        try:
            with open(port_file) as f:
                return p, f"http://127.0.0.1:{json.load(f)['http_port']}"
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    raise SystemExit("the server did not start")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def run_one(binary, args):
    with tempfile.TemporaryDirectory(prefix="rwkvx-stall-") as tmp:
        sdir = os.path.join(tmp, "sessions")
        proc, base = start(binary, tmp, sdir, args)
        try:
            text = ("The grass is green. The sky is blue. " * (args.prompt_bytes // 37 + 1))[:args.prompt_bytes]
            t0 = time.monotonic()
            r = requests.post(base + "/v1/sessions", json={"session_id": "big", "prompt": text}, timeout=900)
            r.raise_for_status()
            created = time.monotonic()
            prefill_s = created - t0
            stamps, stop = [], threading.Event()

            def stream():
                with requests.post(base + "/v1/completions", stream=True, timeout=900,
                                   json={"prompt": "Once", "max_tokens": 1000000, "stream": True,
                                         "ignore_eos": True}) as s:
                    for line in s.iter_lines():
                        if line.startswith(b"data: {"):
                            stamps.append(time.monotonic())
                        if stop.is_set():
                            break

            th = threading.Thread(target=stream, daemon=True)
            th.start()
            # The session is idle from `created`; the loop checks idleness once a second.
            reached = None
            while time.monotonic() - created < args.timeout:
                info = requests.get(base + "/v1/sessions/big", timeout=60).json()
                if info.get("tier") == "disk":
                    reached = time.monotonic()
                    break
                time.sleep(0.02)
            time.sleep(args.tail)
            stop.set()
            th.join(timeout=60)
            size = sum(os.path.getsize(os.path.join(sdir, f)) for f in os.listdir(sdir)
                       if f.endswith(".rwkvxss"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    gaps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
    win_lo = created + args.idle
    win = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])
           if reached is not None and b >= win_lo and a <= reached]
    return {"binary": binary, "prompt_bytes": args.prompt_bytes, "prefill_s": round(prefill_s, 2),
            "file_bytes": size, "save_window_s": round(reached - win_lo, 3) if reached else None,
            "tokens": len(stamps), "gap_ms_median": round(statistics.median(gaps), 2) if gaps else None,
            "gap_ms_p99": round(pct(gaps, 0.99), 2), "gap_ms_max": round(max(gaps), 2) if gaps else None,
            "window_gap_ms_max": round(max(win), 2) if win else None,
            "window_tokens": len(win)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", action="append", required=True, help="rwkvx binary (repeat to compare)")
    ap.add_argument("--prompt-bytes", type=int, default=32768, help="the named session's prompt")
    ap.add_argument("--idle", type=float, default=1.0, help="--session-idle-timeout seconds")
    ap.add_argument("--tail", type=float, default=2.0, help="seconds streamed after the save")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    rows = [run_one(b, args) for b in args.bin]
    print(f"{'binary':40} {'file MB':>8} {'save win s':>10} {'tokens':>7} {'gap p50 ms':>10} "
          f"{'gap p99':>8} {'gap max':>8} {'max in save win':>15}")
    for r in rows:
        print(f"{r['binary'][-40:]:40} {r['file_bytes'] / 1e6:8.1f} {r['save_window_s'] or 0:10.3f} "
              f"{r['tokens']:7d} {r['gap_ms_median'] or 0:10.2f} {r['gap_ms_p99']:8.2f} "
              f"{r['gap_ms_max'] or 0:8.2f} {r['window_gap_ms_max'] or 0:15.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "host_cpus": os.cpu_count()}, f, indent=1)
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
