"""One table: bench_engine (ours) vs the official package, same card, same shapes.

  python3 bench/engine/compare.py bench/engine/results  [--json combined.json]
reads ours_<shape>.json and package_<shape>.json from the folder (written by
scripts/device_check.sh bench/package in one device session) and prints ours, the
package and the ratio.
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    rows = []
    for shape in ("0.2b", "3.6b"):
        po, pp = os.path.join(d, f"ours_{shape}.json"), os.path.join(d, f"package_{shape}.json")
        if not os.path.exists(po):
            continue
        ours = load(po)
        pkg = load(pp) if os.path.exists(pp) else {"decode": [], "prefill": []}
        pd = {r["ctx"]: r["ms_per_token"] for r in pkg["decode"]}
        pf = {r["tokens"]: r["tokens_per_s"] for r in pkg["prefill"]}
        for r in ours["decode"]:
            p = pd.get(r["ctx"])
            rows.append((shape, f"decode ms/token, ctx {r['ctx']}", r["ms_per_token"], p, p / r["ms_per_token"] if p else None))
        for r in ours["prefill"]:
            p = pf.get(r["tokens"])
            rows.append((shape, f"prefill tok/s, T {r['tokens']}", r["tokens_per_s"], p, r["tokens_per_s"] / p if p else None))
        for r in ours["batch"]:
            rows.append((shape, f"batch B={r['B']} ctx {r['ctx']} tok/s (logits / none)",
                         f"{r['tokens_per_s']:.0f} / {r['tokens_per_s_no_logits']:.0f}", None, None))
        for r in ours.get("memory", []):
            rows.append((shape, f"session MiB at ctx {r['ctx']}", r["session_bytes"] / 2**20, None, None))
        card = ours.get("card", "?")
    print(f"card: {card}")
    print(f"{'shape':6s} {'metric':46s} {'ours':>16s} {'package':>10s} {'ratio':>7s}")
    for shape, m, o, p, ratio in rows:
        os_ = o if isinstance(o, str) else f"{o:.3f}" if o < 100 else f"{o:.0f}"
        ps = "" if p is None else (f"{p:.3f}" if p < 100 else f"{p:.0f}")
        rs = "" if ratio is None else f"{ratio:.1f}x"
        print(f"{shape:6s} {m:46s} {os_:>16s} {ps:>10s} {rs:>7s}")
    if out_json:
        with open(out_json, "w") as f:
            json.dump([dict(shape=s, metric=m, ours=o, package=p, ratio=r) for s, m, o, p, r in rows], f, indent=1)


if __name__ == "__main__":
    main()
