"""The official rwkv-x package on the GPU, on the same random-weight shapes as bench_engine.

Runs on the device (torch there; the package folder carried from .venv/oracle/<gen>):
  python3 bench/engine/package_bench.py --shape 0.2b --gen 0.1 --json out.json
Strategy "cuda fp16" with RWKV_CUDA_ON=1 (the package's own wkv7 kernel, built by torch's
cpp_extension at import). The package has one session and no batching: we measure
single-session decode latency by context and prefill tokens/s, timed with CUDA syncs.
"""
import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = {
    "0.2b": dict(n_embd=768, n_rwkv_layer=12, n_attn_layer=4, vocab=65536, rank_w=64, rank_a=64, rank_v=32, rank_g=128),
    "3.6b": dict(n_embd=2560, n_rwkv_layer=32, n_attn_layer=8, vocab=65536, rank_w=96, rank_a=96, rank_v=64, rank_g=320),
}


def parse_ints(s):
    out = []
    for t in s.split(","):
        t = t.strip()
        if not t:
            continue
        mul = 1
        if t[-1] in "kK":
            mul, t = 1024, t[:-1]
        elif t[-1] in "mM":
            mul, t = 1024 * 1024, t[:-1]
        out.append(int(float(t) * mul))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="0.2b")
    ap.add_argument("--gen", default="0.1")
    ap.add_argument("--decode-ctx", default="1K,8K,32K")
    ap.add_argument("--prefill", default="1K,4K,16K")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--fill-chunk", type=int, default=16384)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    os.environ["RWKV_CUDA_ON"] = "1"
    os.environ.setdefault("RWKV_JIT_ON", "1")
    sys.path.insert(0, os.path.join(REPO, "tests", "parity"))
    sys.path.insert(0, os.environ.get("RWKVX_ORACLE_DIR", os.path.join(REPO, ".venv", "oracle", a.gen)))
    import torch
    import oracle  # make_state_dict
    t0 = time.time()
    sd = oracle.make_state_dict(SHAPES[a.shape], 1234)
    sd = {k: v.half() for k, v in sd.items()}
    path = f"/tmp/rwkvx_pkg_{a.shape}.pth"
    torch.save(sd, path)
    del sd
    t1 = time.time()
    import rwkv_x.model as pkg
    conf = pkg.RWKV_X_Config(moba_chunk_size=2048, moba_topk=3, max_kv_cache_size=20000, attn_mode="sparse")
    model = pkg.RWKV_X(path, "cuda fp16", config=conf)
    t2 = time.time()
    card = torch.cuda.get_device_name(0)
    print(f"package rwkv-x {a.gen} on {card}: shape {a.shape}, make {t1 - t0:.1f}s, load+compile {t2 - t1:.1f}s", flush=True)
    V = 65536
    g = torch.Generator().manual_seed(5)

    def toks(n):
        return torch.randint(0, V, (n,), generator=g).tolist()

    res = {"card": card, "shape": a.shape, "package": f"rwkv-x {a.gen}", "decode": [], "prefill": []}
    # warm-up
    _, st = model.forward(toks(512), None)
    for _ in range(3):
        _, st = model.forward([1], st)
    torch.cuda.synchronize()

    print(f"\n{'package decode, 1 session':28s} {'ms/token':>12s}", flush=True)
    for ctx in parse_ints(a.decode_ctx):
        st = None
        done = 0
        while done < ctx:
            n = min(a.fill_chunk, ctx - done)
            _, st = model.forward(toks(n), st)
            done += n
        torch.cuda.synchronize()
        ts = []
        tok = 1
        for i in range(a.steps + 2):
            c0 = time.perf_counter()
            out, st = model.forward([tok], st)
            tok = int(out.argmax())
            torch.cuda.synchronize()
            if i >= 2:
                ts.append((time.perf_counter() - c0) * 1000)
        ms = statistics.median(ts)
        print(f"{'ctx ' + str(ctx):28s} {ms:12.3f}", flush=True)
        res["decode"].append({"ctx": ctx, "ms_per_token": ms})
        del st
        torch.cuda.empty_cache()

    print(f"\n{'package prefill':28s} {'ms':>12s} {'tokens/s':>12s}", flush=True)
    for T in parse_ints(a.prefill):
        ts = []
        for rep in range(2):
            x = toks(T)
            torch.cuda.synchronize()
            c0 = time.perf_counter()
            out, st = model.forward(x, None)
            torch.cuda.synchronize()
            ts.append((time.perf_counter() - c0) * 1000)
            del st
        ms = min(ts)
        print(f"{'T ' + str(T):28s} {ms:12.2f} {T / ms * 1000:12.0f}", flush=True)
        res["prefill"].append({"tokens": T, "ms": ms, "tokens_per_s": T / ms * 1000})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
