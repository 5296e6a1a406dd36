#!/usr/bin/env bash
# Runs on the device machine: the CUDA test suite, then an A/B of the engine benchmark in
# one call: bench_engine_base (an earlier build) against bench_engine (this tree), each
# shape run base, new, base, new so that the spread between two runs of one binary is seen;
# MEMCHECK runs compute-sanitizer memcheck on a filter of the CUDA tests first.
# Expects .gpupack/gpulibs.tar.xz or .gpulibs/ from `BUILD_DIR=build BASE_BENCH=... 
# scripts/device_serve_pack.sh`. Results: $OUT/results.tgz and a table on stdout.
#   AB_SHAPES="0.2b 3.6b" scripts/device_engine_ab.sh
set -uo pipefail
FINAL=${OUT:-/tmp/out}
OUT=$FINAL/r
mkdir -p "$OUT"
trap 'tar -C "$FINAL" -czf "$FINAL/results.tgz" r && rm -rf "$OUT"' EXIT
[ -d .gpulibs ] || tar -xJf .gpupack/gpulibs.tar.xz
export LD_LIBRARY_PATH=$PWD/.gpulibs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=.gpulibs
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout "${TESTS_TIMEOUT:-300}" "$B/cuda_tests" --gtest_filter="${TEST_FILTER:-*}" >"$OUT/cuda_tests.log" 2>&1
  echo "cuda_tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]|tests ran" "$OUT/cuda_tests.log" | head -20
fi
# MEMCHECK=<gtest filter>: compute-sanitizer memcheck on those CUDA tests (e.g. the paging kernels).
if [ -n "${MEMCHECK:-}" ] && command -v compute-sanitizer >/dev/null; then
  timeout "${MEMCHECK_TIMEOUT:-240}" compute-sanitizer --tool memcheck --error-exitcode 9 "$B/cuda_tests" \
    --gtest_filter="$MEMCHECK" >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head -5
fi
for shape in ${AB_SHAPES:-0.2b 3.6b}; do
  runs=${AB_RUNS:-base new base2 new2}
  [ "$shape" = 3.6b ] && runs=${AB_RUNS_36:-base new}
  for run in $runs; do
    bin=$B/bench_engine; [ "${run#base}" != "$run" ] && bin=$B/bench_engine_base
    [ -x "$bin" ] || continue
    timeout "${BENCH_TIMEOUT:-120}" "$bin" --shape "$shape" --decode-ctx "${DECODE_CTX:-1K,32K}" \
      --prefill "${PREFILL:-1K,4K}" --batch "${BATCH:-1,16,256}" --batch-ctx 1K --mem-ctx 8K \
      --json "$OUT/${run}_$shape.json" >"$OUT/${run}_$shape.txt" 2>&1
    echo "$shape $run rc=$?"
  done
done
python3 - "$OUT" <<'PY' | tee "$OUT/ab.md"
import glob, json, os, sys
out = sys.argv[1]
def rows(path):
    try:
        d = json.load(open(path))
    except Exception:
        return {}
    r = {}
    for sec, items in d.items():
        if not isinstance(items, list):
            continue
        for it in items:
            if not isinstance(it, dict):
                continue
            key = sec + " " + " ".join(f"{k}={it[k]}" for k in ("B", "ctx", "tokens") if k in it)
            for k, v in it.items():
                if isinstance(v, (int, float)) and "floor" not in k and any(s in k for s in ("ms", "per_s")):
                    r[key + " " + k] = v
    return r
for shape in sorted({os.path.basename(p).split("_", 1)[1][:-5] for p in glob.glob(out + "/*_*.json")}):
    runs = {n: rows(f"{out}/{n}_{shape}.json") for n in ("base", "new", "base2", "new2")}
    print(f"\n### {shape}\n| metric | base | new | base2 | new2 | new/base |\n|---|---|---|---|---|---|")
    for k in runs["base"]:
        vals = [runs[n].get(k) for n in ("base", "new", "base2", "new2")]
        b = [v for v in (vals[0], vals[2]) if v]
        nw = [v for v in (vals[1], vals[3]) if v]
        ratio = f"{(sum(nw) / len(nw)) / (sum(b) / len(b)):.3f}" if b and nw else ""
        print(f"| {k} | " + " | ".join("" if v is None else f"{v:.4g}" for v in vals) + f" | {ratio} |")
PY
