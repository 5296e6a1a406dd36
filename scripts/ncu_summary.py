#!/usr/bin/env python3
"""Per-kernel summary of `ncu --print-summary per-kernel --metrics gpu__time_duration.sum`
output: total kernel time, launches, and the kernels by summed time (top 25)."""
import re, sys
txt = open(sys.argv[1]).read()
rows = []
for blk in re.split(r"\n(?=  \S.*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\))", txt):
    m = re.match(r"\s*(\S.*?)\s*\(\d+, \d+, \d+\)x", blk)
    inv = re.search(r"Invocations\s*:?\s*(\d+)", blk)
    t = re.search(r"gpu__time_duration.sum\s+(\S+)\s+[\d.,]+\s+[\d.,]+\s+([\d.,]+)", blk)
    if m and t:
        unit, avg = t.group(1), float(t.group(2).replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3}.get(unit, 1.0)
        n = int(inv.group(1)) if inv else 1
        rows.append((avg * scale * n, n, m.group(1)[:90]))
rows.sort(reverse=True)
tot = sum(r[0] for r in rows)
print(f"total {tot/1000:.2f} ms over {sum(r[1] for r in rows)} launches")
for us, n, name in rows[:25]:
    print(f"{us/1000:9.3f} ms {100*us/max(tot,1e-9):5.1f}% {n:5d}x  {name}")
