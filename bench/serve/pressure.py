#!/usr/bin/env python3
"""Memory-pressure load: many long streaming requests at once against a server whose
session memory is far smaller than they need together. Counts how each request ended:

  completed   streamed to a finish_reason (stop/length)
  refused     answered 429 (or 503) before any token: the client may retry
  failed      an error event after the stream started, or a dropped connection: a started
              stream that died (the server's promise is that this stays 0)

    bench/serve/pressure.py --url http://127.0.0.1:8080 --concurrency 192 --prompt-words 3000

Prints a table line and writes JSON (--out). Measures; does not judge: the caller (a
bench script) records the numbers with the card and the flags it ran.
"""
import argparse
import asyncio
import json
import platform
import time

import aiohttp


async def one(session, url, i, words, max_tokens):
    prompt = f"Request {i}. " + " ".join(f"word{(i * 7919 + k) % 5003}" for k in range(words))
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 1.0,
            "seed": i, "ignore_eos": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    out = {"i": i, "status": None, "tokens": 0, "finish": None, "error": None}
    try:
        async with session.post(url + "/v1/completions", json=body) as r:
            out["status"] = r.status
            if r.status != 200:
                out["error"] = (await r.read())[:300].decode(errors="replace")
                out["kind"] = "refused" if r.status in (429, 503) else "failed"
                return out
            started = False
            async for raw in r.content:
                line = raw.strip()
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    break
                ev = json.loads(data)
                if "error" in ev:
                    out["error"] = ev["error"]
                    continue
                started = True
                if ev.get("usage"):
                    out["tokens"] = ev["usage"]["completion_tokens"]
                for ch in ev.get("choices") or []:
                    if ch.get("finish_reason"):
                        out["finish"] = ch["finish_reason"]
            if out["error"] is not None:
                out["kind"] = "failed" if started else "refused"
            else:
                out["kind"] = "completed" if out["finish"] in ("stop", "length") else "failed"
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        out["error"] = repr(e)
        out["kind"] = "failed"
    out["latency_s"] = round(time.perf_counter() - t0, 3)
    return out


async def run(url, n, concurrency, words, max_tokens):
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=1800)
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        async def guarded(i):
            async with sem:
                return await one(s, url, i, words, max_tokens)
        t0 = time.perf_counter()
        res = await asyncio.gather(*[guarded(i) for i in range(n)])
        return res, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--concurrency", type=int, default=192)
    ap.add_argument("--requests", type=int, default=0, help="total (default: = concurrency)")
    ap.add_argument("--prompt-words", type=int, default=3000)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    n = a.requests or a.concurrency
    res, wall = asyncio.run(run(a.url, n, a.concurrency, a.prompt_words, a.max_tokens))
    kinds = {k: sum(r["kind"] == k for r in res) for k in ("completed", "refused", "failed")}
    summary = {"label": a.label, "requests": n, "concurrency": a.concurrency,
               "prompt_words": a.prompt_words, "max_tokens": a.max_tokens, "wall_s": round(wall, 2),
               **kinds, "gen_tokens": sum(r["tokens"] for r in res), "host": platform.node(),
               "failures": [r for r in res if r["kind"] == "failed"][:5]}
    print(f"| {a.label} | {n} | {a.concurrency} | {kinds['completed']} | {kinds['refused']} | "
          f"{kinds['failed']} | {wall:.1f} s |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"summary": summary, "requests": res}, f, indent=1)


if __name__ == "__main__":
    main()
