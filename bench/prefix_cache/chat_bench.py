#!/usr/bin/env python3
"""A 20-turn chat over the OpenAI API (streaming /v1/chat/completions through the openai
client) against rwkvx serve with the prefix state cache off and on: per turn, the prompt
tokens, the tokens actually prefilled (from /metrics) and the time to first token.
Prints a table and writes JSON. It starts the server itself (by default the embedded
model on the CPU backend), one configuration after the other so they do not compete:

    .venv/bin/python bench/prefix_cache/chat_bench.py --bin build/rwkvx \\
        --out bench/prefix_cache/results_cpu_embedded.json

Extra server flags go after `--` (e.g. `-- --model M.pth --vocab V.txt`). No
thresholds: this measures, it does not judge (docs/PREFIX_CACHE.md).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import openai
import requests


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
from loadgen import start_server  # noqa: E402  (one way to start a benchmark server)


def metric(base, name):
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def host_info():
    return {"machine": platform.machine(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0]}


def write_json(path, out):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


def user_message(turn, chars):
    base = (f"Turn {turn}. Please consider the following note and answer briefly: "
            "the committee met on a rainy Tuesday to review the budget, the schedule, "
            "and the list of open questions from the previous meeting. ")
    return (base * (chars // len(base) + 1))[:chars]


def run_chat(base, turns, user_chars, max_tokens):
    c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    model = c.models.list().data[0].id
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer briefly."}]
    rows = []
    for t in range(turns):
        messages.append({"role": "user", "content": user_message(t, user_chars)})
        prompt_before = metric(base, "rwkvx_prompt_tokens_total")
        t0 = time.perf_counter()
        ttft, text, usage = None, [], None
        stream = c.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=1.0, seed=t,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        for ch in stream:
            if ch.choices and ch.choices[0].delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                text.append(ch.choices[0].delta.content)
            if ch.usage:
                usage = ch.usage
        total = time.perf_counter() - t0
        prefilled = metric(base, "rwkvx_prompt_tokens_total") - prompt_before
        answer = "".join(text)
        messages.append({"role": "assistant", "content": answer})
        rows.append({"turn": t + 1, "prompt_tokens": usage.prompt_tokens,
                     "completion_tokens": usage.completion_tokens,
                     "prefilled_tokens": int(prefilled),
                     "ttft_s": ttft if ttft is not None else total, "total_s": total,
                     "answer": answer})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/rwkvx")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--user-chars", type=int, default=240, help="characters per user message")
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per answer")
    ap.add_argument("--cache-bytes", type=int, default=2 << 30,
                    help="--prefix-cache-bytes when on; -1: no flag (the server's default size)")
    ap.add_argument("--out", default="bench/prefix_cache/results.json")
    ap.add_argument("server_flags", nargs="*", help="extra rwkvx serve flags (after --)")
    a = ap.parse_args()
    on_flags = [] if a.cache_bytes == -1 else ["--prefix-cache-bytes", str(a.cache_bytes)]
    configs = {"off": ["--prefix-cache-bytes", "0"], "on": on_flags}
    runs = {}
    for name, flags in configs.items():
        proc, base = start_server(a.bin, ["--backend", "cpu", *flags, *a.server_flags])
        try:
            runs[name] = run_chat(base, a.turns, a.user_chars, a.max_tokens)
            runs[name + "_metrics"] = {k: metric(base, "rwkvx_prefix_cache_" + k) for k in
                                       ("hits_total", "misses_total", "saved_tokens_total",
                                        "bytes", "entries", "evictions_total")}
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    same = [r["answer"] for r in runs["off"]] == [r["answer"] for r in runs["on"]]
    print(f"{'turn':>4} {'prompt':>7} {'prefill off':>11} {'prefill on':>10} "
          f"{'TTFT off ms':>11} {'TTFT on ms':>10} {'TTFT ratio':>10} {'wall off ms':>11} {'wall on ms':>10}")
    for off, on in zip(runs["off"], runs["on"]):
        ratio = off["ttft_s"] / on["ttft_s"] if on["ttft_s"] > 0 else float("nan")
        print(f"{off['turn']:>4} {off['prompt_tokens']:>7} {off['prefilled_tokens']:>11} "
              f"{on['prefilled_tokens']:>10} {off['ttft_s'] * 1e3:>11.1f} {on['ttft_s'] * 1e3:>10.1f} "
              f"{ratio:>10.2f} {off['total_s'] * 1e3:>11.1f} {on['total_s'] * 1e3:>10.1f}")
    wall_off = sum(r["total_s"] for r in runs["off"])
    wall_on = sum(r["total_s"] for r in runs["on"])
    sum_off = sum(r["prefilled_tokens"] for r in runs["off"])
    sum_on = sum(r["prefilled_tokens"] for r in runs["on"])
    ttft_off = sum(r["ttft_s"] for r in runs["off"])
    ttft_on = sum(r["ttft_s"] for r in runs["on"])
    late = slice(a.turns // 2, None)  # second half: long histories
    med_off = statistics.median(r["ttft_s"] for r in runs["off"][late])
    med_on = statistics.median(r["ttft_s"] for r in runs["on"][late])
    print(f"total prefilled tokens: off {sum_off}, on {sum_on} ({sum_off / max(sum_on, 1):.1f}x fewer)")
    print(f"sum of TTFT: off {ttft_off:.2f} s, on {ttft_on:.2f} s; median TTFT of turns "
          f"{a.turns // 2 + 1}-{a.turns}: off {med_off * 1e3:.1f} ms, on {med_on * 1e3:.1f} ms "
          f"({med_off / med_on:.1f}x)")
    print(f"sum of wall time per turn: off {wall_off:.2f} s, on {wall_on:.2f} s ({wall_off / wall_on:.2f}x)")
    print(f"identical answers with and without the cache: {same}")
    print(f"cache metrics (on): {runs['on_metrics']}")
    out = {"bench": "prefix_cache_chat", "turns": a.turns, "user_chars": a.user_chars,
           "max_tokens": a.max_tokens, "server_flags": a.server_flags,
           "cache_bytes_flag": a.cache_bytes,
           "host": host_info(),
           "wall_sum_s": {"off": wall_off, "on": wall_on},
           "identical_answers": same, "prefilled_tokens": {"off": sum_off, "on": sum_on},
           "ttft_sum_s": {"off": ttft_off, "on": ttft_on},
           "ttft_median_second_half_s": {"off": med_off, "on": med_on},
           "cache_metrics_on": runs["on_metrics"],
           "turns_off": runs["off"], "turns_on": runs["on"]}
    write_json(a.out, out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
