#!/usr/bin/env bash
# Runs on the device machine, in one call: per-kernel times (Nsight Compute, the kernels'
# own durations, no cache flushes, the card's own clocks) of single steps of bench_engine,
# one profile after another, each capped by what is left of BUDGET_S (default 540 s).
#   PROFILES="SPEC ..." (default below), SPEC = SHAPE:KIND:N[:B][:WEIGHTS]
#     prefill  one session's prefill of N tokens (bench_engine RWKVX_PROFILE_PREFILL)
#     decode   one decode step of one session at N tokens of context, graphs off
#     batch    one decode step of B sessions at N context, sampled on the GPU, graphs off
#   WEIGHTS: fp16 (default), fp8 or int8.
# Results: $OUT/results.tgz with ncu_<spec>.txt (the raw per-kernel summary) and
# ncu_<spec>_summary.txt (scripts/ncu_summary.py: kernels by summed time); the summaries
# are also printed. Here: `BUILD_DIR=build PACK_BINS=bench_engine scripts/device_serve_pack.sh`,
# then the device tool with carry [".gpupack"] and this script.
set -uo pipefail
. "$(dirname "$0")/device_lib.sh"
device_begin 540 10
B=.gpulibs/bench_engine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for spec in ${PROFILES:-3.6b:prefill:1024 0.2b:prefill:1024 0.2b:decode:32768 3.6b:decode:1024}; do
  IFS=: read -r shape kind n bsz weights <<<"$spec"
  [ "$kind" = batch ] || { weights=$bsz; bsz=""; }
  weights=${weights:-fp16}
  name=ncu_${shape}_${kind}_${n}${bsz:+_b$bsz}_${weights}
  envs=()
  extra=()
  case $kind in
    prefill) envs=(RWKVX_PROFILE_PREFILL="$n") ;;
    decode) envs=(RWKVX_PROFILE_DECODE="$n"); extra=(--cuda-graphs 0) ;;
    batch) envs=(RWKVX_PROFILE_DECODE="$n" RWKVX_PROFILE_BATCH="$bsz"); extra=(--cuda-graphs 0) ;;
    *) echo "device_profile: unknown kind '$kind' in $spec" >&2; continue ;;
  esac
  if [ "$(left)" -lt 30 ]; then echo "device_profile: no time left for $spec"; break; fi
  timeout "$(cap 240)" env "${envs[@]}" ncu --profile-from-start off --cache-control none --clock-control none \
    --print-summary per-kernel --metrics gpu__time_duration.sum "$B" --shape "$shape" --weights "$weights" \
    "${extra[@]}" >"$OUT/$name.txt" 2>&1
  echo "== $name exit $?"
  python3 scripts/ncu_summary.py "$OUT/$name.txt" | tee "$OUT/${name}_summary.txt" | head -"${TOP:-16}"
done
