"""bench/cpu: the CPU engine against the official rwkv-x package ("cpu fp32") on the same
random-weight checkpoint, same machine, same run. Prints one table, writes JSON.

  .venv/bin/python bench/cpu/run.py [--shape 0.2b|small] [--out bench/out/cpu.json]

Measures: one-session decode (ms/token), 8-session decode (tokens/s; the package has no
batching, so it runs the 8 sessions one after another), prefill tokens/s, the bytes of
weights one decode token reads and the GB/s that achieves against this machine's copy
bandwidth. Medians of repeated steps on both sides. Never asserts on time.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "parity"))

SHAPES = {
    # The released 0.2B: RWKV-7 L12 D768 + 4 sparse blocks (LoRA ranks of the 0.1B/0.4B family).
    "0.2b": dict(vocab=65536, n_embd=768, n_rwkv_layer=12, n_attn_layer=4, ffn_dim=3072,
                 rank_w=64, rank_a=64, rank_v=32, rank_g=128),
    "small": dict(vocab=4096, n_embd=256, n_rwkv_layer=4, n_attn_layer=2, ffn_dim=1024,
                  rank_w=16, rank_a=16, rank_v=8, rank_g=32),
}


def package_numbers(model_path, steps, prefill, batch):
    import torch
    import oracle
    torch.set_num_threads(os.cpu_count() or 1)
    model = oracle.build_model("0.1", model_path, {"max_kv_cache_size": 0})
    V = model.rwkv.args.vocab_size
    toks = [(i * 7919 + 13) % V for i in range(prefill)]

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    # Medians, as bench_cpu reports (a shared VM is bursty).
    prefill_tps = prefill / statistics.median(timed(lambda: model.forward(toks, None)) for _ in range(3))
    _, state = model.forward([1, 2, 3], None)
    model.forward(1, state)
    holder = {"s": state}

    def step(i):
        _, holder["s"] = model.forward((i * 31 + 7) % V, holder["s"])

    dec1 = statistics.median(timed(lambda i=i: step(i)) for i in range(steps))
    states = []
    for b in range(batch):
        _, st = model.forward([1, 2, 3, 4], None)
        states.append(st)
    bsteps = max(3, steps // 4)

    def round_(i):
        for b in range(batch):
            _, states[b] = model.forward((b * 31 + i) % V, states[b])

    decb = statistics.median(timed(lambda i=i: round_(i)) for i in range(bsteps))
    return dict(decode1_ms=dec1 * 1e3, decode1_tps=1 / dec1, decodeB_tps=batch / decb, prefill_tps=prefill_tps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="0.2b", choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "bench", "bench_cpu"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "cpu.json"))
    ap.add_argument("--model", help="reuse this checkpoint instead of writing a new one")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not model:
            model = os.path.join(tmp, "m.pth")
            print(f"writing a random {args.shape} checkpoint ...", flush=True)
            subprocess.run([sys.executable, os.path.join(REPO, "tests", "parity", "oracle.py"), "make",
                            "--out", model, "--shape", json.dumps(SHAPES[args.shape])], check=True)
        ours_json = os.path.join(tmp, "ours.json")
        print("running rwkvx (bench_cpu) ...", flush=True)
        subprocess.run([args.bin, "--model", model, "--json", ours_json, "--decode-steps", str(args.steps),
                        "--prefill", str(args.prefill), "--batch", str(args.batch)], check=True)
        ours = json.load(open(ours_json))
        print("running the official package (rwkv-x 0.1.3, cpu fp32) ...", flush=True)
        pkg = package_numbers(model, args.steps, args.prefill, args.batch)
    rows = [
        ("decode, 1 session (ms/token)", ours["decode1_ms"], pkg["decode1_ms"], pkg["decode1_ms"] / ours["decode1_ms"]),
        (f"decode, {args.batch} sessions (tokens/s)", ours["decodeB_tps"], pkg["decodeB_tps"], ours["decodeB_tps"] / pkg["decodeB_tps"]),
        (f"prefill {args.prefill} (tokens/s)", ours["prefill_tps"], pkg["prefill_tps"], ours["prefill_tps"] / pkg["prefill_tps"]),
    ]
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"\nCPU: {cpu}, {os.cpu_count()} cores; shape {args.shape}; OpenBLAS core {ours.get('blas_core')}")
    print("| metric | rwkvx | rwkv-x package | speed-up |\n|---|---|---|---|")
    for name, a, b, r in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {r:.2f}x |")
    print(f"| weight bytes per decode token | {ours['weight_bytes_per_token']/1e6:.1f} MB | | |")
    print(f"| achieved / copy bandwidth | {ours['achieved_gbs']:.1f} / {ours['copy_bandwidth_gbs']:.1f} GB/s "
          f"({100*ours['achieved_gbs']/ours['copy_bandwidth_gbs']:.0f}%) | | |")
    json.dump(dict(cpu=cpu, cores=os.cpu_count(), shape=args.shape, ours=ours, package=pkg,
                   rows=[dict(metric=n, rwkvx=a, package=b, speedup=r) for n, a, b, r in rows]),
              open(args.out, "w"), indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
