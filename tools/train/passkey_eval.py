"""Passkey retrieval measured through the C++ CPU engine (`rwkvx replay`), not PyTorch.

  python3 tools/train/passkey_eval.py --bin build/rwkvx --model server/embedded/model.pth \
      --out server/embedded/passkey.json [--lengths 1024,4096,...] [--modes sparse,full,compress]

For each prompt length (bytes = tokens, byte-level) and depth, the prompt (data.py's
passkey_prompt) is prefilled in one call, then " " and the first four digits are fed as
single-token decode steps (the engine's decode path, where sparse retrieval happens). A
trial passes when the argmax of every step's logits is the next answer token: the prompt's
last logits give " ", then the five digits. That is exactly greedy decoding of " NNNNN".
With --server-chunks N the prompt is instead fed in prefill calls of N tokens (as the
server's scheduler does; a final 1-token rest is a decode step, as there).

Modes (the model's sidecar config with these overrides):
  sparse   : decode top-k chunk selection, no KV compression
  full     : decode attends to the whole cache (--attn-mode full), no compression
  compress : sparse, with compression (max 20000 rows, window 2000, keep 16000)
"""
import argparse
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import ANSWER, passkey_prompt, encode  # noqa: E402

DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]


def mode_flags(mode, cfg):
    f = ["--moba-chunk-size", str(cfg["chunk_size"]), "--moba-topk", str(cfg["topk"]),
         "--full-attn-threshold", str(cfg["full_attn_threshold"])]
    if mode == "full":
        return f + ["--attn-mode", "full", "--max-kv-cache-size", "0"]
    if mode == "sparse":
        return f + ["--attn-mode", "sparse", "--max-kv-cache-size", "0"]
    if mode == "compress":
        return f + ["--attn-mode", "sparse", "--max-kv-cache-size", "20000",
                    "--kv-cache-window-size", "2000", "--min-kv-cache-size", "16000"]
    raise ValueError(mode)


def trial(binary, model, flags, n, depth, key, threads, server_chunks):
    prompt = encode(passkey_prompt(n, depth, key)).tolist()
    answer = encode(ANSWER.format(key=key)[:6]).tolist()   # " " + 5 digits
    calls = []
    if server_chunks:
        i = 0
        while len(prompt) - i > 1:
            m = min(server_chunks, len(prompt) - i)
            calls.append({"kind": "seq", "tokens": prompt[i:i + m]})
            i += m
        if i < len(prompt):
            calls.append({"kind": "one", "tokens": prompt[i:]})
        nskip = len(calls) - 1
    else:
        calls.append({"kind": "seq", "tokens": prompt})
        nskip = 0
    calls += [{"kind": "one", "tokens": [t]} for t in answer[:5]]
    with tempfile.TemporaryDirectory() as d:
        sp, lp = os.path.join(d, "s.json"), os.path.join(d, "l.f32")
        json.dump({"calls": calls}, open(sp, "w"))
        cmd = [binary, "replay", "--model", model, "--script", sp, "--out", lp, "--threads", str(threads)] + flags
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        logits = np.fromfile(lp, dtype="<f4").reshape(len(calls), -1)[nskip:]
    pred = logits.argmax(-1).tolist()
    got = bytes(p - 1 for p in pred if 1 <= p <= 256).decode("latin-1")
    return pred == answer, got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/rwkvx")
    ap.add_argument("--model", default="server/embedded/model.pth")
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default="1024,4096,16384,32768,65536")
    ap.add_argument("--modes", default="sparse,full,compress")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--server-chunks", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="trials run at once (each with --threads)")
    ap.add_argument("--random-trials", type=int, default=0,
                    help="instead of the 5 fixed depths: N trials per length at random depths and keys")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random-trials")
    a = ap.parse_args()
    cfg = json.load(open(a.model + ".json"))
    res = {"model": os.path.basename(a.model), "config": cfg, "depths": DEPTHS,
           "server_chunks": a.server_chunks, "results": {}}
    lengths = list(map(int, a.lengths.split(",")))
    modes = a.modes.split(",")
    depths = DEPTHS
    if a.random_trials:
        r = random.Random(a.seed)
        depths = [round(r.random(), 4) for _ in range(a.random_trials)]
    res["depths"] = depths
    todo = [(mode, n, di, d) for mode in modes for n in lengths for di, d in enumerate(depths)]
    todo.sort(key=lambda t: -t[1])  # longest first: better packing with --jobs

    def one(t):
        mode, n, di, d = t
        key = 10000 + (n * 7919 + di * 104729 + a.seed * 15485863) % 90000
        t0 = time.time()
        ok, got = trial(a.bin, a.model, mode_flags(mode, cfg), n, d, key, a.threads, a.server_chunks)
        print(f"{mode:8s} {n:6d} depth {d:.2f} key {key} -> {got!r} {'OK' if ok else 'miss'}"
              f" ({time.time() - t0:.1f}s)", flush=True)
        return t, {"depth": d, "key": key, "ok": ok, "greedy": got, "s": round(time.time() - t0, 1)}

    rows = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        for t, row in ex.map(one, todo):
            rows[t] = row
            for mode in modes:
                res["results"][mode] = {}
                for n in lengths:
                    got = [rows[(mode, n, di, d)] for di, d in enumerate(depths) if (mode, n, di, d) in rows]
                    if got:
                        res["results"][mode][str(n)] = {"acc": sum(r["ok"] for r in got) / len(got),
                                                        "n": len(got), "trials": got}
            json.dump(res, open(a.out, "w"), indent=1)
    print("\n| mode | " + " | ".join(map(str, lengths)) + " |")
    for mode in modes:
        byn = res["results"][mode]
        print(f"| {mode} | " + " | ".join(f"{byn[str(n)]['acc'] * 100:.0f}%" for n in lengths) + " |")


if __name__ == "__main__":
    main()
