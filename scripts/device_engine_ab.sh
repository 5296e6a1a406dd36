#!/usr/bin/env bash
# Runs on the device machine: the CUDA test suite, then an A/B of the engine benchmark in
# one call: bench_engine_base (an earlier build) against bench_engine (this tree), and
# bench_engine_<name> for any other carried variant named in the run list; each shape's
# runs are interleaved (base new ... base2 new2 ...) so that the spread between two runs
# of one binary is seen. MEMCHECK runs compute-sanitizer memcheck on a filter of the CUDA
# tests first (RACECHECK the same with racecheck); VARIANT_TESTS runs cuda_tests_<name> (filter VARIANT_FILTER) for variants.
# Expects .gpupack/gpulibs.tar.xz or .gpulibs/ from `BUILD_DIR=build BASE_BENCH=...
# PACK_BINS="cuda_tests bench_engine bench_engine_base" scripts/device_serve_pack.sh` (~40 MB;
# every program in one pack goes over the device tool's 64 MiB). Results: $OUT/results.tgz and a table on stdout.
# PROFILE_PREFILL / PROFILE_DECODE / PROFILE_BATCH add ncu profiles and DETAIL_DECODE one
# kernel's ncu sections (below); AB_SHAPES=none
# TESTS=0 runs the profiles alone.
#   AB_SHAPES="0.2b 3.6b" AB_RUNS="base new base2 new2" scripts/device_engine_ab.sh
# A run named <stem> with FLAGS_<stem> set and no bench_engine_<stem> carried is this
# tree's bench_engine with those flags (AB_RUNS="base new pdl" FLAGS_pdl="--pdl 1"). A trailing
# "2" marks a repeat (base2 is base again): name flag runs without one (drows, not dr2).
set -uo pipefail
. "$(dirname "$0")/device_lib.sh"
device_begin 570 15
B=.gpulibs
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${TESTS:-1}" = 1 ]; then
  timeout $(cap ${TESTS_TIMEOUT:-300}) "$B/cuda_tests" --gtest_filter="${TEST_FILTER:-*}" >"$OUT/cuda_tests.log" 2>&1
  echo "cuda_tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]|tests ran" "$OUT/cuda_tests.log" | head -20
fi
if [ -n "${MEMCHECK:-}" ] && command -v compute-sanitizer >/dev/null; then
  timeout $(cap ${MEMCHECK_TIMEOUT:-240}) compute-sanitizer --tool memcheck --error-exitcode 9 "$B/cuda_tests" \
    --gtest_filter="$MEMCHECK" >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head -5
fi
if [ -n "${RACECHECK:-}" ] && command -v compute-sanitizer >/dev/null; then  # a filter, as MEMCHECK
  timeout $(cap ${RACECHECK_TIMEOUT:-180}) compute-sanitizer --tool racecheck --error-exitcode 9 "$B/cuda_tests" \
    --gtest_filter="$RACECHECK" >"$OUT/racecheck.log" 2>&1
  echo "racecheck rc=$?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" | head -5
fi
for v in ${VARIANT_TESTS:-}; do
  fv="VARIANT_FILTER_$v"  # a variant's own filter, else VARIANT_FILTER
  timeout $(cap 200) "$B/cuda_tests_$v" --gtest_filter="${!fv:-${VARIANT_FILTER:-*}}" >"$OUT/cuda_tests_$v.log" 2>&1
  echo "cuda_tests_$v rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]" "$OUT/cuda_tests_$v.log" | head -10
done
# ncu per-kernel times (kernel durations and DRAM bytes read, no cache flushes, the card's
# clocks) of single steps of this tree's bench_engine, graphs off (PROFILE_FLAGS: extra
# bench_engine flags for every profile, e.g. "--wkv-matrix 1" or "--weights fp8"):
#   PROFILE_PREFILL="3.6b:1024 0.2b:4096" (or bare T on PROFILE_SHAPE, default 3.6b): one
#     session's prefill of T tokens -> ncu_prefill_<shape>_<T>
#   PROFILE_DECODE="0.2b:32768": one session's decode step at that context -> ncu_decode_*
#   PROFILE_BATCH="3.6b:256": one sampled decode step of B sessions at PROFILE_CTX (default
#     1024; temperature 1, top-p 0.9: the server's path) -> ncu_batch_<shape>_<B>
profile() {  # profile NAME SHAPE ENV=VALUE...: one profiled bench_engine run -> $OUT/NAME{,_summary}.txt
  local name=$1 shp=$2; shift 2
  command -v ncu >/dev/null || return 0
  timeout $(cap ${PROFILE_TIMEOUT:-200}) env "$@" ncu --profile-from-start off --cache-control none --clock-control none \
    --print-summary per-kernel --metrics gpu__time_duration.sum,dram__bytes_read.sum "$B/bench_engine" --shape "$shp" \
    --cuda-graphs 0 ${PROFILE_FLAGS:-} >"$OUT/$name.txt" 2>&1
  echo "$name rc=$?"
  python3 scripts/ncu_summary.py "$OUT/$name.txt" | tee "$OUT/${name}_summary.txt" | head -25
}
for spec in ${PROFILE_PREFILL:-}; do
  shp=${PROFILE_SHAPE:-3.6b}; pt=$spec
  case "$spec" in *:*) shp=${spec%%:*}; pt=${spec#*:} ;; esac
  profile "ncu_prefill_${shp}_$pt" "$shp" RWKVX_PROFILE_PREFILL="$pt"
done
for spec in ${PROFILE_DECODE:-}; do
  profile "ncu_decode_${spec%%:*}_${spec#*:}" "${spec%%:*}" RWKVX_PROFILE_DECODE="${spec#*:}"
done
for spec in ${PROFILE_BATCH:-}; do
  profile "ncu_batch_${spec%%:*}_${spec#*:}" "${spec%%:*}" RWKVX_PROFILE_BATCH="${spec#*:}" RWKVX_PROFILE_DECODE="${PROFILE_CTX:-1024}"
done
# DETAIL_DECODE="0.2b:32768:AttnDecodeKernel": ncu's speed-of-light, occupancy, warp-state,
# scheduler, memory-workload and source sections for the first launch of the named kernel
# (a regex) in one session's decode step at that context, graphs off (what bounds it:
# memory, latency, issue) -> ncu_detail_<shape>_<ctx>_<kernel>.txt. DETAIL_PREFILL the same
# for one session's prefill of that many tokens -> ncu_detail_prefill_<shape>_<T>_<kernel>.txt
detail() {  # detail PREFIX ENVVAR SPEC
  local pre=$1 var=$2 shp ctx kn f
  command -v ncu >/dev/null || return 0
  IFS=: read -r shp ctx kn <<<"$3"
  f="$OUT/${pre}_${shp}_${ctx}_${kn//[^A-Za-z0-9_]/_}.txt"
  env "$var=$ctx" timeout $(cap ${PROFILE_TIMEOUT:-200}) ncu --profile-from-start off --cache-control none \
    --clock-control none --kernel-name "regex:$kn" --launch-count 1 --section SpeedOfLight --section Occupancy \
    --section WarpStateStats --section SchedulerStats --section LaunchStats --section MemoryWorkloadAnalysis \
    --section InstructionStats --section SourceCounters "$B/bench_engine" --shape "$shp" --cuda-graphs 0 \
    ${PROFILE_FLAGS:-} >"$f" 2>&1
  echo "ncu detail $3 rc=$?"
  grep -E "Duration|Throughput|Achieved Occupancy|Registers Per|Stall|Issue Slot|Warp Cycles" "$f" | head -24
}
for spec in ${DETAIL_DECODE:-}; do detail ncu_detail RWKVX_PROFILE_DECODE "$spec"; done
for spec in ${DETAIL_PREFILL:-}; do detail ncu_detail_prefill RWKVX_PROFILE_PREFILL "$spec"; done
# A run's binary and flags: bin (bench_engine_<stem>, or this tree's bench_engine for
# "new" and for a FLAGS_<stem> run such as FLAGS_pdl="--pdl 1") and extra; fails if none.
resolve() {
  local stem=${1%2} fv
  bin=$B/bench_engine; [ "$stem" != new ] && bin=$B/bench_engine_$stem
  fv="FLAGS_$stem"; extra=${!fv:-}
  [ -x "$bin" ] || { [ -n "$extra" ] && bin=$B/bench_engine; }
  [ -x "$bin" ]
}
# MIXED="200,30,128" MIXED_RUNS="base new wrows" (MIXED_SHAPE, default 0.2b): the timed mixed
# step of RWKVX_PROFILE_MIXED=D,P,T (D decoding sessions + P new T-token prompts, sampled:
# the server's step when requests join) for each run, named as in AB_RUNS; no profiler.
for spec in ${MIXED:-}; do
  for run in ${MIXED_RUNS:-base new}; do
    resolve "$run" || continue
    line=$(RWKVX_PROFILE_MIXED=$spec timeout $(cap 90) "$bin" --shape "${MIXED_SHAPE:-0.2b}" $extra 2>&1 | grep "mixed step")
    echo "mixed $spec $run: $line" | tee -a "$OUT/mixed.txt"
  done
done
for shape in ${AB_SHAPES:-0.2b 3.6b}; do  # AB_SHAPES=none: tests and profiles only
  [ "$shape" = none ] && continue
  runs=${AB_RUNS:-base new base2 new2}
  [ "$shape" = 3.6b ] && runs=${AB_RUNS_36:-base new}
  for run in $runs; do
    resolve "$run" || continue
    args="--decode-ctx ${DECODE_CTX:-1K,32K} --prefill ${PREFILL:-1K,4K} --batch ${BATCH:-1,16,256}"
    [ "$shape" = 3.6b ] && args="--decode-ctx ${DECODE_CTX_36:-1K} --prefill ${PREFILL_36:-1K} --batch ${BATCH_36:-1,256}"
    timeout $(cap ${BENCH_TIMEOUT:-120}) "$bin" --shape "$shape" $args $extra --batch-ctx 1K --mem-ctx 8K \
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
files = glob.glob(out + "/*_*.json")
# <run>_<shape>.json: a run's name may hold '_' (layernorm_slices2), a shape does not.
split = lambda p: os.path.basename(p)[:-5].rsplit("_", 1)
for shape in sorted({split(p)[1] for p in files}):
    names = sorted({split(p)[0] for p in files if split(p)[1] == shape})
    stems = sorted({n.rstrip("2") for n in names}, key=lambda s: (s != "base", s))
    runs = {n: rows(f"{out}/{n}_{shape}.json") for n in names}
    others = [s for s in stems if s != "base"]
    print(f"\n### {shape}\n| metric | " + " | ".join(names) + " | " + " | ".join(f"{s}/base" for s in others) + " |")
    print("|---" * (1 + len(names) + len(others)) + "|")
    def mean(stem, k):
        v = [runs[n].get(k) for n in names if n.rstrip("2") == stem and runs[n].get(k)]
        return sum(v) / len(v) if v else None
    for k in runs.get("base", {}):
        vals = [runs[n].get(k) for n in names]
        b = mean("base", k)
        ratios = [f"{mean(s, k) / b:.3f}" if b and mean(s, k) else "" for s in others]
        print(f"| {k} | " + " | ".join("" if v is None else f"{v:.4g}" for v in vals) + " | " + " | ".join(ratios) + " |")
PY
