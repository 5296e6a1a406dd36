#!/usr/bin/env bash
# Runs on the device machine, in one call: the GPU sampler's row form (one block a row,
# every pass in one kernel; CudaBackendOptions::sample_row_threads) against the pass form,
# both in this tree's bench_engine (same binary, same call). Stages, each capped by what is
# left of BUDGET_S (default 300 s):
#   1. cuda_tests CudaSample* (the row form's bits against the pass form's and the host's)
#   2. bench_engine 0.2B at 1K context, batches 1 / 16 / 256 / 1024 (BATCH): pass form,
#      row form of 512 and 256 threads (and 512 without the round-2 collection, once),
#      interleaved (ROUNDS, default 2); the sampled column
#      is temperature 1, top-p 0.9, 32 penalties
#   3. the same batches sampled as the server's default request (temperature 1, no top-p,
#      no penalties), pass form and row form 512
#   4. compute-sanitizer memcheck of CudaSample.RowForm* (MEMCHECK=0 skips)
# Then a table: sampled / no-logits step time and sampled step time against the pass form.
# Here: `BUILD_DIR=build scripts/device_serve_pack.sh`, then the device tool with carry
# [".gpupack"]. Results: $OUT/results.tgz (cuda_tests.log, <run>.txt/json, table.md).
set -uo pipefail
. "$(dirname "$0")/device_lib.sh"
device_begin 300 8
B=.gpulibs
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
timeout "$(cap 60)" "$B/cuda_tests" --gtest_filter='CudaSample*' >"$OUT/cuda_tests.log" 2>&1
echo "cuda_tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]|tests ran" "$OUT/cuda_tests.log" | head -20
bench() {  # bench NAME FLAGS...
  local name=$1; shift
  timeout "$(cap 40)" "$B/bench_engine" --shape 0.2b --decode-ctx 1K --prefill 1K --batch "${BATCH:-1,16,256,1024}" \
    --batch-ctx 1K --mem-ctx 8K "$@" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1
  echo "bench $name rc=$?"
}
for r in $(seq 1 "${ROUNDS:-2}"); do
  bench "passes_$r" --sample-row-threads 0
  bench "row512_$r" --sample-row-threads 512
  [ "$r" = 1 ] && bench "row256_$r" --sample-row-threads 256
  [ "$r" = 1 ] && bench "row512nocollect_$r" --sample-row-threads 512 --sample-row-collect 0
done
bench plain_passes_1 --sample-row-threads 0 --sample-top-p 1 --sample-penalties 0
bench plain_row512_1 --sample-row-threads 512 --sample-top-p 1 --sample-penalties 0
if [ "${MEMCHECK:-1}" = 1 ] && command -v compute-sanitizer >/dev/null && [ "$(left)" -gt 20 ]; then
  timeout "$(cap 60)" compute-sanitizer --tool memcheck --error-exitcode 9 "$B/cuda_tests" \
    --gtest_filter='CudaSample.RowForm*' >"$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | head -5
fi
python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import glob, json, os, sys
out = sys.argv[1]
runs = {}
for p in sorted(glob.glob(out + "/*.json")):
    try:
        d = json.load(open(p))
    except Exception:
        continue
    runs[os.path.basename(p)[:-5]] = {b["B"]: b for b in d.get("batch", [])}
card = ""
try:
    card = open(out + "/gpu.txt").readline().split(",")[0]
except OSError:
    pass
print(f"Sampler forms on {card} (bench_engine 0.2B, 1K context; ms a step)\n")
print("| run | B | no-logits | sampled | sampled / no-logits | sampled / pass form (same sampling, mean) |")
print("|---|---|---|---|---|---|")
def base(name, B):
    stem = "plain_passes" if name.startswith("plain") else "passes"
    v = [r[B]["ms_per_step_sampled"] for n, r in runs.items() if n.rsplit("_", 1)[0] == stem and B in r]
    return sum(v) / len(v) if v else None
for name, r in runs.items():
    for B, b in sorted(r.items()):
        bb = base(name, B)
        rel = f"{b['ms_per_step_sampled'] / bb:.3f}" if bb else ""
        print(f"| {name} | {B} | {b['ms_per_step_no_logits']:.3f} | {b['ms_per_step_sampled']:.3f} | "
              f"{b['ms_per_step_sampled'] / b['ms_per_step_no_logits']:.3f} | {rel} |")
PY
