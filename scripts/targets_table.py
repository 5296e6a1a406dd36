#!/usr/bin/env python3
"""Issues 14 and 18's targets against what scripts/device_targets.sh measured.

Usage: targets_table.py DIR   (DIR: the results folder, with engine/, package/, serve/r/)
Prints a Markdown table: target, measured, and whether it is met; a figure that did not run
shows as "not run". Ratios against the package use the package's figures from the same
folder (the same call). The card is the one bench_engine names.
"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pick(rows, **want):
    for r in rows or []:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def level(path):
    d = load(path)
    return (d or {}).get("levels", [None])[0] if d else None


INFO = "(no target)"  # a row for reference beside a target's row


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    eng = lambda n: load(os.path.join(root, "engine", n + ".json")) or {}
    pkg = lambda n: load(os.path.join(root, "package", "package_" + n + ".json")) or {}
    srv = lambda n: level(os.path.join(root, "serve", "r", n + ".json"))
    e02, e36, e1m = eng("0.2b"), eng("3.6b"), eng("0.2b_1m")
    p02, p36 = pkg("0.2b"), pkg("3.6b")
    rows = []

    def row(issue, what, target, value, ok, fmt="{:.3g}"):
        if value is None:
            rows.append((issue, what, target, "not run", ""))
        else:
            rows.append((issue, what, target, fmt.format(value) if not isinstance(value, str) else value,
                         "" if target == INFO else "yes" if ok else "no"))

    def get(d, sec, key, **want):
        r = pick(d.get(sec), **want)
        return r.get(key) if r else None

    # Issue 14.
    s = srv("tput_default_short")
    row(14, "server 0.2B, 256 concurrent, 64-byte prompts, 128 tokens: gen tok/s", ">= 90,000",
        s and s["gen_tok_per_s"], s and s["gen_tok_per_s"] >= 90000, "{:,.0f}")
    s = srv("tput_default_long")
    row(14, "server 0.2B, 256 concurrent, ~512-token prompts: req/s", ">= 400", s and s["req_per_s"],
        s and s["req_per_s"] >= 400, "{:.1f}")
    s = srv("tput_default_one")
    row(14, "streaming TTFT p50, one stream, aiohttp (ms)", "<= 5", s and s["ttft_ms_p50"],
        s and s["ttft_ms_p50"] <= 5, "{:.2f}")
    v = get(e02, "batch", "tokens_per_s_sampled", B=256)
    row(14, "bench 0.2B B=256 1K sampled tok/s", ">= 100,000", v, v and v >= 100000, "{:,.0f}")
    v = get(e36, "batch", "tokens_per_s_sampled", B=256)
    row(14, "bench 3.6B B=256 1K sampled tok/s", ">= 15,000", v, v and v >= 15000, "{:,.0f}")
    s = srv("tput36_short")
    row(14, "server 3.6B, 256 concurrent short prompts: gen tok/s", ">= 25,000", s and s["gen_tok_per_s"],
        s and s["gen_tok_per_s"] >= 25000, "{:,.0f}")
    for b in (1, 16, 256, 1024):
        r = pick(e02.get("batch"), B=b)
        v = r and r["ms_per_step_sampled"] / r["ms_per_step_no_logits"]
        row(14, f"0.2B B={b}: sampled / no-logits step time (top-p 0.9, 32 penalties)", "<= 1.15", v,
            v and v <= 1.15, "{:.3f}")
    for b in (1, 16, 256, 1024):  # the server's default request: temperature 1, no top-p
        r = pick(eng("0.2b_plain").get("batch"), B=b)
        v = r and r["ms_per_step_sampled"] / r["ms_per_step_no_logits"]
        row(14, f"0.2B B={b}: sampled / no-logits step time (temperature 1, no top-p, no penalties)", "<= 1.15",
            v, v and v <= 1.15, "{:.3f}")

    # Issue 18.
    d02 = get(e02, "decode", "ms_per_token", ctx=1024)
    pd02 = get(p02, "decode", "ms_per_token", ctx=1024)
    row(18, "0.2B one session, 1K, ms/token (fp16)", "<= 0.40", d02, d02 and d02 <= 0.40)
    # The same step with the token drawn on the GPU (greedy) instead of the logits row
    # copied to the host: what the server runs (--sampling auto).
    v = get(e02, "decode", "ms_per_token_sampled", ctx=1024)
    row(18, "0.2B one session, 1K, greedy on the GPU (the server's path), ms/token", INFO, v, None)
    row(18, "0.2B one session: package / ours", ">= 200x", d02 and pd02 and pd02 / d02,
        d02 and pd02 and pd02 / d02 >= 200, "{:.0f}x")
    v = get(eng("0.2b_fp8"), "decode", "ms_per_token", ctx=1024)
    row(18, "0.2B one session fp8, ms/token", "<= 0.30", v, v and v <= 0.30)
    v = get(e36, "decode", "ms_per_token", ctx=1024)
    row(18, "3.6B one session, 1K, ms/token (fp16)", "<= 3.0", v, v and v <= 3.0)
    v = get(e36, "decode", "ms_per_token_sampled", ctx=1024)
    row(18, "3.6B one session, 1K, greedy on the GPU (the server's path), ms/token", INFO, v, None)
    for w in ("fp8", "int8"):
        v = get(eng("3.6b_" + w), "decode", "ms_per_token", ctx=1024)
        row(18, f"3.6B one session {w}, ms/token", "<= 2.0", v, v and v <= 2.0)
    for t in (1024, 4096, 16384):
        v = get(e36, "prefill", "tokens_per_s", tokens=t)
        pv = get(p36, "prefill", "tokens_per_s", tokens=t)
        row(18, f"3.6B prefill {t // 1024}K tok/s", ">= 60,000", v, v and v >= 60000, "{:,.0f}")
        row(18, f"3.6B prefill {t // 1024}K: ours / package", ">= 3x", v and pv and v / pv,
            v and pv and v / pv >= 3, "{:.2f}x")
    for t in (1024, 4096, 16384):
        v = get(e02, "prefill", "tokens_per_s", tokens=t)
        pv = get(p02, "prefill", "tokens_per_s", tokens=t)
        row(18, f"0.2B prefill {t // 1024}K: ours / package", ">= 4x", v and pv and v / pv,
            v and pv and v / pv >= 4, "{:.2f}x")
    a = pick(e1m.get("decode"), ctx=1024)
    z = pick(e1m.get("decode"), ctx=1048576)
    v = a and z and z["ms_per_token"] / a["ms_per_token"]
    row(18, "0.2B decode at 1M context / at 1K", "<= 1.2", v, v and v <= 1.2, "{:.3f}")
    # Flat: past the compression cap (max_kv 20000 rows on the 0.2B shape) a session's bytes
    # stop growing, so 1M context holds no more than 32K (already past the cap), 5% slack.
    k32 = pick(e02.get("decode"), ctx=32768)
    flat = z and k32 and z["session_bytes"] <= 1.05 * k32["session_bytes"]
    row(18, "0.2B session MiB at 1M context vs 32K (flat: the compression cap)", "<= 1.05x of 32K",
        "{:.1f} (32K: {:.1f})".format(z["session_bytes"] / 2**20, k32["session_bytes"] / 2**20) if z and k32 else None,
        flat)

    card = e02.get("card") or e36.get("card")
    if not card:  # no bench_engine run (STAGES=serve): the card nvidia-smi named for the call
        try:
            with open(os.path.join(root, "gpu.txt")) as f:
                card = f.readline().split(",")[0].strip()
        except OSError:
            pass
    card = card or "?"
    print(f"Targets of issues 14 and 18 on **{card}** (one call; package = rwkv-x 0.1.3 cuda fp16 in the same call)\n")
    print("| issue | figure | target | measured | met |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
