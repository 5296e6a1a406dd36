#!/usr/bin/env bash
# Runs on the device machine, in one call: every figure issues 14 and 18 set a target for,
# with the baselines they name run in the same call, then scripts/targets_table.py's table
# of target against measured (targets.md, also printed). Stages, each capped by what is left
# of BUDGET_S (default 560 s):
#   1. bench_engine 0.2B: decode of one session at 1K / 32K context, prefill 1K / 4K / 16K,
#      batches of 1 / 16 / 256 / 1024 (logits out, no logits, sampled); 1K against 1M
#      context (a run of its own); fp8 one session; the batches again sampled as the server's
#      default request (temperature 1, no top-p, no penalties: 0.2b_plain)
#   2. bench_engine 3.6B: decode 1K, prefill 1K / 4K / 16K, batches of 1 / 16 / 256; fp8 and
#      int8 one session
#   3. the official package (rwkv-x 0.1.3, cuda fp16, RWKV_CUDA_ON=1) on both shapes
#      (scripts/device_check.sh package; its folder carried from .venv/oracle/0.1, which
#      scripts/setup.sh installs; without the test venv: `python3 -m pip install --no-deps
#      --target .venv/oracle/0.1 rwkv-x==0.1.3`)
#   4. rwkvx serve (scripts/device_serve_e2e.sh): 0.2B 256 concurrent short prompts
#      (TPUT_REQUESTS, default 4096), ~512-token prompts (TPUT_REQUESTS_LONG, default 2048),
#      one stream (aiohttp TTFT); 3.6B 256 concurrent short prompts and one stream
# Here: `BUILD_DIR=build PACK_BINS="rwkvx bench_engine" scripts/device_serve_pack.sh` (~40 MB),
# then the device tool with carry [".gpupack", ".venv/oracle/0.1"] and this script. Results: $OUT/results.tgz
# (engine/, package/, serve/, targets.md); STAGES="engine package serve" to pick;
# ENGINE_SET=quick runs a short engine stage (one session and batches at 1K; 3.6B fp16 and fp8).
# TARGETS_BENCH=bench_engine_base: the engine stage with the carried earlier build (when the pack
# holds a new bench_engine for an A/B in the same lease and the table should show the landed one).
# Such a pack (cuda_tests and bench_parity in it too) with .whl went over the device tool's
# 64 MiB carry in session 27; without bench_parity and .whl it was ~49 MiB.
set -uo pipefail
. "$(dirname "$0")/device_lib.sh"
device_begin 560 15
mkdir -p "$OUT/engine"
B=.gpulibs/${TARGETS_BENCH:-bench_engine}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
stages=${STAGES:-engine package serve}
bench() {  # bench NAME TIMEOUT ARGS...: one bench_engine run -> engine/NAME.{txt,json}
  local name=$1 t=$2; shift 2
  timeout "$(cap "$t")" "$B" "$@" --json "$OUT/engine/$name.json" >"$OUT/engine/$name.txt" 2>&1
  echo "bench $name rc=$?"
}
if [[ " $stages " == *" engine "* ]] && [ "${ENGINE_SET:-full}" = quick ]; then
  # ENGINE_SET=quick: the one-session and batched figures only (a short call)
  bench 0.2b 70 --shape 0.2b --decode-ctx 1K --prefill 1K --batch 1,16,256,1024 --batch-ctx 1K --mem-ctx 8K
  bench 0.2b_plain 50 --shape 0.2b --decode-ctx 1K --prefill 1K --batch 1,16,256,1024 --batch-ctx 1K --mem-ctx 8K \
    --sample-top-p 1 --sample-penalties 0
  bench 3.6b 80 --shape 3.6b --decode-ctx 1K --prefill 1K --batch 1,256 --batch-ctx 1K --mem-ctx 8K
  bench 3.6b_fp8 50 --shape 3.6b --weights fp8 --decode-ctx 1K --prefill 1K --batch 1 --batch-ctx 1K --mem-ctx 8K
elif [[ " $stages " == *" engine "* ]]; then
  bench 0.2b 120 --shape 0.2b --decode-ctx 1K,32K --prefill 1K,4K,16K --batch 1,16,256,1024 --batch-ctx 1K --mem-ctx 8K
  bench 0.2b_plain 60 --shape 0.2b --decode-ctx 1K --prefill 1K --batch 1,16,256,1024 --batch-ctx 1K --mem-ctx 8K \
    --sample-top-p 1 --sample-penalties 0
  bench 0.2b_1m 100 --shape 0.2b --decode-ctx 1K,1M --prefill 1K --batch 1 --batch-ctx 1K --mem-ctx 8K
  bench 0.2b_fp8 60 --shape 0.2b --weights fp8 --decode-ctx 1K --prefill 1K --batch 1 --batch-ctx 1K --mem-ctx 8K
  bench 3.6b 150 --shape 3.6b --decode-ctx 1K --prefill 1K,4K,16K --batch 1,16,256 --batch-ctx 1K --mem-ctx 8K
  bench 3.6b_fp8 70 --shape 3.6b --weights fp8 --decode-ctx 1K --prefill 1K --batch 1 --batch-ctx 1K --mem-ctx 8K
  bench 3.6b_int8 70 --shape 3.6b --weights int8 --decode-ctx 1K --prefill 1K --batch 1 --batch-ctx 1K --mem-ctx 8K
fi
if [[ " $stages " == *" package "* ]] && [ "$(left)" -gt 120 ]; then
  OUT=$OUT/package RWKVX_ORACLE_DIR=$PWD/.venv/oracle/0.1 PKG_SHAPES="0.2b 3.6b" PKG_DECODE_CTX=1K \
    PKG_PREFILL=1K,4K,16K PKG_TIMEOUT=$(cap 90) scripts/device_check.sh package 2>&1 | grep -E "exit|ctx|^T " | head -20
fi
if [[ " $stages " == *" serve "* ]] && [ "$(left)" -gt 60 ]; then
  OUT=$OUT/serve BUDGET_S=$(left) PRESSURE=0 LOAD=0 E2E='' TPUT=1 TPUT_BATCH_FLAGS='' TPUT_REQUESTS=${TPUT_REQUESTS:-4096} \
    TPUT_REQUESTS_LONG=${TPUT_REQUESTS_LONG:-2048} TPUT36=${TPUT36:-1} TPUT36_REQUESTS=${TPUT36_REQUESTS:-1024} \
    scripts/device_serve_e2e.sh 2>&1 | grep -vE "^WARNING|pip" | tail -12
  [ -f "$OUT/serve/results.tgz" ] && tar -xzf "$OUT/serve/results.tgz" -C "$OUT/serve" && rm "$OUT/serve/results.tgz"
fi
python3 scripts/targets_table.py "$OUT" | tee "$OUT/targets.md"
