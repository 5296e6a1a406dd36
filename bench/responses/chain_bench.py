#!/usr/bin/env python3
"""An 8-turn conversation three ways against rwkvx serve (CPU backend by default), one
server at a time: /v1/responses chained through previous_response_id (the stored state
continues), and /v1/chat/completions resending the whole history, with the prefix cache
off and on (its default size). Greedy (temperature 0), so the three must give the same
answers (checked). Per turn: the input tokens, the tokens actually prefilled (the rise of
rwkvx_prompt_tokens_total), the cached tokens the usage reports, and the wall time.
Prints a table and writes JSON; no thresholds.

    .venv/bin/python bench/responses/chain_bench.py --bin build/rwkvx \\
        --out bench/responses/results_cpu_embedded.json
"""
import argparse
import os
import sys
import time

import openai

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))
sys.path.insert(0, os.path.join(HERE, "..", "prefix_cache"))
from loadgen import start_server  # noqa: E402
from chat_bench import host_info, metric, user_message, write_json  # noqa: E402

SYSTEM = "You are a helpful assistant. Answer briefly."
PROMPT = "rwkvx_prompt_tokens_total"


def responses_chain(base, turns, chars, max_tokens):
    c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    rows, prev = [], None
    for t in range(turns):
        before = metric(base, PROMPT)
        t0 = time.perf_counter()
        extra = {"previous_response_id": prev} if prev else {}
        r = c.responses.create(model="", input=user_message(t, chars), instructions=SYSTEM,
                               max_output_tokens=max_tokens, temperature=0.0, **extra)
        wall = time.perf_counter() - t0
        prev = r.id
        rows.append({"turn": t + 1, "input_tokens": r.usage.input_tokens,
                     "cached_tokens": r.usage.input_tokens_details.cached_tokens,
                     "prefilled_tokens": int(metric(base, PROMPT) - before),
                     "output_tokens": r.usage.output_tokens, "wall_s": wall,
                     "answer": r.output_text})
    return rows


def chat_resend(base, turns, chars, max_tokens):
    c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": SYSTEM}]
    rows = []
    for t in range(turns):
        messages.append({"role": "user", "content": user_message(t, chars)})
        before = metric(base, PROMPT)
        t0 = time.perf_counter()
        r = c.chat.completions.create(model="", messages=messages, max_tokens=max_tokens,
                                      temperature=0.0)
        wall = time.perf_counter() - t0
        answer = r.choices[0].message.content
        messages.append({"role": "assistant", "content": answer})
        rows.append({"turn": t + 1, "input_tokens": r.usage.prompt_tokens,
                     "cached_tokens": r.usage.prompt_tokens_details.cached_tokens,
                     "prefilled_tokens": int(metric(base, PROMPT) - before),
                     "output_tokens": r.usage.completion_tokens, "wall_s": wall,
                     "answer": answer})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/rwkvx")
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--user-chars", type=int, default=240)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--out", default="bench/responses/results.json")
    ap.add_argument("server_flags", nargs="*", help="extra rwkvx serve flags (after --)")
    a = ap.parse_args()
    runs = {}
    plans = {"responses": (responses_chain, ["--prefix-cache-bytes", "0"]),
             "chat_cache_off": (chat_resend, ["--prefix-cache-bytes", "0"]),
             "chat_cache_on": (chat_resend, [])}
    for name, (fn, flags) in plans.items():
        proc, base = start_server(a.bin, ["--backend", "cpu", *flags, *a.server_flags])
        try:
            runs[name] = fn(base, a.turns, a.user_chars, a.max_tokens)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    answers = {k: [r["answer"] for r in v] for k, v in runs.items()}
    same = answers["responses"] == answers["chat_cache_off"] == answers["chat_cache_on"]
    names = list(runs)
    print(f"{'turn':>4} {'input':>6} " + " ".join(f"{'prefilled ' + n:>24}" for n in names)
          + " " + " ".join(f"{'wall ms ' + n:>22}" for n in names))
    for i in range(a.turns):
        print(f"{i + 1:>4} {runs['responses'][i]['input_tokens']:>6} "
              + " ".join(f"{runs[n][i]['prefilled_tokens']:>24}" for n in names) + " "
              + " ".join(f"{runs[n][i]['wall_s'] * 1e3:>22.1f}" for n in names))
    totals = {n: {"prefilled_tokens": sum(r["prefilled_tokens"] for r in runs[n]),
                  "wall_s": sum(r["wall_s"] for r in runs[n])} for n in names}
    for n in names:
        print(f"{n}: {totals[n]['prefilled_tokens']} tokens prefilled, {totals[n]['wall_s']:.2f} s")
    print(f"identical answers: {same}")
    out = {"bench": "responses_chain", "turns": a.turns, "user_chars": a.user_chars,
           "max_tokens": a.max_tokens, "server_flags": a.server_flags,
           "host": host_info(), "identical_answers": same, "totals": totals, "runs": runs}
    write_json(a.out, out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
