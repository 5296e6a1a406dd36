#!/usr/bin/env bash
# Runs on the device machine, in one call: (1) the memory-pressure load (bench/serve/
# pressure.py) against `rwkvx serve --backend cuda` on a random-weight 0.2B checkpoint
# (official layout, made there with its PyTorch) with a small --gpu-memory-fraction, the
# scenario where started streams used to die; (2) the e2e suite (tests/e2e) against the
# CUDA backend (--backend auto picks the GPU); (3) the load test (tests/load) on the GPU;
# Expects .gpupack/ or .gpulibs/ (scripts/device_serve_pack.sh: rwkvx + the libraries the
# device lacks) and .whl/ (the clients' wheels for Python 3.12).
# (4) serving throughput with bench/serve/loadgen.py (256 streams, short and ~512-token
# prompts; one stream). Optional first stages: CUDA_TESTS=1 runs .gpulibs/cuda_tests (and
# compute-sanitizer memcheck on the sampler's tests), BENCH="0.2b 3.6b" runs
# .gpulibs/bench_engine's (BENCH_BINS: several carried builds') batched decode (no logits / sampled / sampled with a grammar
# mask); PARITY="0.2b 3.6b" runs .gpulibs/bench_parity. Results: $OUT/results.tgz (pressure_*.json, tput_*.json, load.*, e2e.log, server
# logs, cuda_tests.log, bench_*.txt/json, ncu_batch*.txt). Stages switch off with PRESSURE=0 TPUT=0
# LOAD=0 E2E=; PROFILE_BATCH="256" adds an ncu profile of one sampled decode step of B sessions;
# MIXED="D,P,T ..." times (MIXED_NCU=1: profiles) mixed decode + prompt steps; TPUT36=1 runs
# the 3.6B shape through the server (256 concurrent short prompts, one stream).
#   FRACTIONS="0.03" CONC=192 scripts/device_serve_e2e.sh
set -uo pipefail
ROOT=$PWD
# BUDGET_S (default 570): the whole call's seconds; everything goes under $OUT/r, then into
# one archive (scripts/device_lib.sh).
. "$(dirname "$0")/device_lib.sh"
device_begin 570 10
BIN=${SERVE_BIN:-$ROOT/.gpulibs/rwkvx}  # SERVE_BIN: another carried build of rwkvx
VOCAB=$ROOT/.gpulibs/rwkv_vocab_v20230424.txt
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${CUDA_TESTS:-0}" = 1 ]; then
  timeout $(cap 300) .gpulibs/cuda_tests >"$OUT/cuda_tests.log" 2>&1
  echo "cuda_tests rc=$?"; grep -E "^\[  (PASSED|FAILED) |FAILED  \]|SKIPPED \]" "$OUT/cuda_tests.log" | head -20
  if [ "${MEMCHECK_SAMPLER:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    timeout $(cap 200) compute-sanitizer --tool memcheck .gpulibs/cuda_tests --gtest_filter='CudaSample.GrammarMask*:CudaSample.StepSampled*' \
      >"$OUT/memcheck_sample.log" 2>&1
    echo "memcheck (sampler) rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck_sample.log" | head -5
  fi
fi
# PROFILE_BATCH="256": ncu per-kernel times of one sampled decode step of B sessions at 1K
# context (0.2B shape, graphs off so that each kernel is seen; PROFILE_SHAPE to change).
for pb in ${PROFILE_BATCH:-}; do
  if command -v ncu >/dev/null; then
    RWKVX_PROFILE_BATCH=$pb RWKVX_PROFILE_DECODE=${PROFILE_CTX:-1024} timeout $(cap 200) ncu --profile-from-start off \
      --cache-control none --clock-control none --print-summary per-kernel \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      .gpulibs/bench_engine --shape "${PROFILE_SHAPE:-0.2b}" --cuda-graphs 0 >"$OUT/ncu_batch$pb.txt" 2>&1
    echo "ncu B=$pb rc=$?"; python3 scripts/ncu_summary.py "$OUT/ncu_batch$pb.txt" | tee "$OUT/ncu_batch${pb}_summary.txt" | head -30
  fi
done
# NCU_DETAIL="Wkv7Kernel": ncu's speed-of-light, occupancy, warp-state and launch sections
# for the first launch of each named kernel in one sampled decode step of 256 sessions at
# 1K context (0.2B; graphs off): what bounds it (memory, latency, issue).
for kn in ${NCU_DETAIL:-}; do
  if command -v ncu >/dev/null; then
    RWKVX_PROFILE_BATCH=256 RWKVX_PROFILE_DECODE=1024 timeout $(cap 150) ncu --profile-from-start off \
      --cache-control none --clock-control none --kernel-name "regex:$kn" --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
      --section MemoryWorkloadAnalysis .gpulibs/bench_engine --shape 0.2b --cuda-graphs 0 >"$OUT/ncu_detail_$kn.txt" 2>&1
    echo "ncu detail $kn rc=$?"; grep -E "Duration|Throughput|Achieved Occupancy|Registers Per|Theoretical Occ|Block Limit" "$OUT/ncu_detail_$kn.txt" | head -16
  fi
done
# MIXED="192,64,17 192,2,512": bench_engine's mixed step (RWKVX_PROFILE_MIXED=D,P,T: D
# sessions decoding beside P new T-token prompts, every item sampled), timed against the
# decode step alone; MIXED_NCU=1 adds its per-kernel ncu profile (graphs off); MIXED_SEQ=1
# the same step with --wkv-chunked 0 (every item on the sequential recurrence); MIXED_SHAPE
# (default PROFILE_SHAPE) picks the shape.
for spec in ${MIXED:-}; do
  RWKVX_PROFILE_MIXED=$spec timeout $(cap 120) .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" >"$OUT/mixed_$spec.txt" 2>&1
  echo "mixed $spec rc=$?"; grep "mixed step" "$OUT/mixed_$spec.txt"
  if [ -n "${MIXED_ALT:-}" ]; then  # MIXED_ALT="--flag value ...": the same step with other bench_engine flags
    RWKVX_PROFILE_MIXED=$spec timeout $(cap 120) .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" $MIXED_ALT >"$OUT/mixed_alt_$spec.txt" 2>&1
    echo "mixed ($MIXED_ALT) $spec rc=$?"; grep "mixed step" "$OUT/mixed_alt_$spec.txt"
    RWKVX_PROFILE_MIXED=$spec timeout $(cap 120) .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" >"$OUT/mixed2_$spec.txt" 2>&1
    echo "mixed (again) $spec rc=$?"; grep "mixed step" "$OUT/mixed2_$spec.txt"
  fi
  if [ "${MIXED_SEQ:-0}" = 1 ]; then  # the same step with the sequential wkv7 only (the split off)
    RWKVX_PROFILE_MIXED=$spec timeout $(cap 120) .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" --wkv-chunked 0 >"$OUT/mixed_seq_$spec.txt" 2>&1
    echo "mixed (--wkv-chunked 0) $spec rc=$?"; grep "mixed step" "$OUT/mixed_seq_$spec.txt"
  fi
  if [ "${MIXED_NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
    RWKVX_PROFILE_MIXED=$spec timeout $(cap 200) ncu --profile-from-start off --cache-control none --clock-control none \
      --print-summary per-kernel --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" --cuda-graphs 0 >"$OUT/ncu_mixed_$spec.txt" 2>&1
    echo "ncu mixed $spec rc=$?"; python3 scripts/ncu_summary.py "$OUT/ncu_mixed_$spec.txt" | tee "$OUT/ncu_mixed_${spec}_summary.txt" | head -25
  fi
done
# MIXED_DETAIL="Wkv7Kernel": ncu's speed-of-light, warp-state, scheduler, memory and source
# sections for the first launch of each named kernel inside the first MIXED spec's step.
for kn in ${MIXED_DETAIL:-}; do
  spec=${MIXED%% *}
  if [ -n "$spec" ] && command -v ncu >/dev/null; then
    RWKVX_PROFILE_MIXED=$spec timeout $(cap 200) ncu --profile-from-start off --cache-control none --clock-control none \
      --kernel-name "regex:$kn" --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats \
      --section SchedulerStats --section LaunchStats --section MemoryWorkloadAnalysis --section InstructionStats \
      --section SourceCounters .gpulibs/bench_engine --shape "${MIXED_SHAPE:-${PROFILE_SHAPE:-0.2b}}" --cuda-graphs 0 \
      >"$OUT/ncu_mixed_detail_$kn.txt" 2>&1
    echo "ncu mixed detail $kn rc=$?"; grep -E "Duration|Throughput|Achieved Occupancy|Registers Per|Stall|Issue Slot|Warp Cycles" "$OUT/ncu_mixed_detail_$kn.txt" | head -24
  fi
done
# BENCH_BINS="bench_engine_base bench_engine bench_engine_base bench_engine": carried builds run
# in turn (interleaved for a same-call ratio); results bench_<bin>_<shape>[_<n>].txt/json. An
# entry "bin:flag,value,..." adds bench_engine flags (e.g. bench_engine:--fused-decode,0;
# tagged bench_<bin>_f<k> for the k-th such entry).
declare -A seen=()
for shape in ${BENCH:-}; do
  nf=0
  for be in ${BENCH_BINS:-bench_engine}; do
    bb=${be%%:*}; bf=""; lab=$bb
    if [[ $be == *:* ]]; then bf=${be#*:}; bf=${bf//,/ }; nf=$((nf + 1)); lab=${bb}_f$nf; fi
    n=$(( ${seen[$lab$shape]:-0} + 1 )); seen[$lab$shape]=$n; tag=${lab}_$shape; [ "$n" -gt 1 ] && tag=${tag}_$n
    timeout $(cap 150) .gpulibs/$bb --shape "$shape" --decode-ctx 1K --prefill 1K --batch "${BENCH_BATCH:-1,16,256,1024}" \
      --batch-ctx 1K --mem-ctx 1K $bf --json "$OUT/$tag.json" >"$OUT/$tag.txt" 2>&1
    echo "bench $tag rc=$?"; grep -A8 "^batched decode" "$OUT/$tag.txt"
  done
done
# PARITY="0.2b 3.6b": .gpulibs/bench_parity per shape (PARITY_WEIGHTS, default fp16,fp8,int8;
# PARITY_STEPS, default 256): each precision's logits against the fp32 CPU engine.
for shape in ${PARITY:-}; do
  timeout $(cap 300) .gpulibs/bench_parity --shape "$shape" --weights "${PARITY_WEIGHTS:-fp16,fp8,int8}" \
    --steps "${PARITY_STEPS:-256}" --json "$OUT/parity_$shape.json" >"$OUT/parity_$shape.txt" 2>&1
  echo "parity $shape rc=$?"; tail -4 "$OUT/parity_$shape.txt"
done
pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}

python3 - <<'PY' || exit 1
import sys, torch
sys.path.insert(0, "tests/parity"); sys.path.insert(0, "bench/engine")
import oracle
from package_bench import SHAPES
torch.save(oracle.make_state_dict(SHAPES["0.2b"], 1234), "/tmp/m02.pth")
PY
serve() {  # $1 = label; the rest = extra flags (MODEL_PTH: another checkpoint). Sets URL once the ports file exists.
  local label=$1; shift
  rm -f /tmp/ports.json
  "$BIN" serve --backend cuda --model "${MODEL_PTH:-/tmp/m02.pth}" --vocab "$VOCAB" --http-port 0 --grpc-port -1 \
    --port-file /tmp/ports.json --max-sessions 256 --max-queue 1024 "$@" >"$OUT/server_$label.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 600); do
    [ -s /tmp/ports.json ] && python3 -c 'import json;json.load(open("/tmp/ports.json"))' 2>/dev/null && break
    kill -0 $SERVER 2>/dev/null || { echo "server $label exited"; tail -5 "$OUT/server_$label.log"; return 1; }
    sleep 0.2
  done
  URL=http://127.0.0.1:$(python3 -c 'import json;print(json.load(open("/tmp/ports.json"))["http_port"])')
}
if [ "${PRESSURE:-1}" = 1 ]; then
  echo "| run | requests | concurrency | completed | refused | failed | wall |" | tee "$OUT/pressure.md"
  echo "|---|---|---|---|---|---|---|" | tee -a "$OUT/pressure.md"
  for frac in ${FRACTIONS:-0.03}; do
    serve "frac$frac" --gpu-memory-fraction "$frac" ${PRESSURE_FLAGS:-} || continue  # e.g. "--prefix-cache-bytes 0"
    mem() {  # nvidia-smi beside what the server says it holds (docs/METRICS.md)
      local m; m=$(curl -s "$URL/metrics")
      echo "$1 gpu_used_mib $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits) rss_kib $(awk '/VmRSS/{print $2}' /proc/$SERVER/status)" \
        $(echo "$m" | awk '/^rwkvx_(session_state_bytes|prefix_cache_bytes|prefix_cache_entries|backend_device_bytes|backend_graphs) /{sub("rwkvx_", "", $1); printf "%s %s ", $1, $2}')
    }
    mem baseline >"$OUT/memory_frac$frac.txt"
    for round in $(seq ${PRESSURE_ROUNDS:-1}); do  # memory after each round: back to the same figure?
      timeout $(cap 900) python3 bench/serve/pressure.py --url "$URL" --concurrency "${CONC:-192}" \
        --prompt-words "${WORDS:-3000}" --max-tokens "${MAXTOK:-64}" \
        --label "H200 0.2B --gpu-memory-fraction $frac (round $round)" --out "$OUT/pressure_frac${frac}_$round.json" | tee -a "$OUT/pressure.md"
      mem "after_round_$round" >>"$OUT/memory_frac$frac.txt"
    done
    curl -s "$URL/metrics" | grep -E '^rwkvx_(requests_finished|requests_rejected|preempt|session_state_bytes|steps_total)' >"$OUT/metrics_frac$frac.txt"
    cat "$OUT/memory_frac$frac.txt"
    kill -INT $SERVER; wait $SERVER
  done
fi

# TPUT_VARIANTS: label:flag,value,... servers to compare in this call (default one, "default:");
# label@name:... runs the carried .gpulibs/name (another build of rwkvx) instead.
if [ "${TPUT:-1}" = 1 ]; then  # bench/serve/loadgen.py at the issue's two loads
  for variant in ${TPUT_VARIANTS:-default:}; do
    label=${variant%%:*}; flags=${variant#*:}; flags=${flags//,/ }
    vbin=$BIN  # label@name: the carried .gpulibs/name (another build) instead of rwkvx
    if [[ $label == *@* ]]; then vbin=$ROOT/.gpulibs/${label#*@}; label=${label%@*}; fi
    echo "tput $label ($vbin $flags)"
    # TPUT_BATCH_FLAGS (default "--max-batch-tokens 1024", the issue's loads; "" = the server's own default)
    BIN=$vbin serve "tput_$label" ${TPUT_BATCH_FLAGS---max-batch-tokens 1024} --max-queue 2048 $flags || continue
    # After each load: the server's step counters, so that the backend's share of the wall
    # (rwkvx_step_duration_seconds_sum) and the mean batch are known.
    stepstats() { curl -s "$URL/metrics" | grep -E '^rwkvx_(steps_total|time_to_first_token_seconds_(sum|count)|queue_time_seconds_(sum|count)|inter_token_latency_seconds_(sum|count)|scheduler_(cpu_)?seconds_total\{[^}]*\}|steps_by_kind_total\{[^}]*\}|step_seconds_total\{[^}]*\}|step_duration_seconds_(sum|count)|step_batch_sessions_(sum|count)|step_batch_tokens_(sum|count)|backend_graphs|backend_device_bytes) ' >"$OUT/tput_${label}_$1.metrics"; }
    # TPUT_LOADS (default "short long one"): which of the three loads run, in that order;
    # TPUT_REQUESTS / TPUT_REQUESTS_LONG (default 1024 each): requests of the short / long load.
    for load in ${TPUT_LOADS:-short long one}; do
      case $load in
        short) timeout $(cap 200) python3 bench/serve/loadgen.py --url "$URL" --procs "${LG_PROCS:-8}" --concurrency 256 \
                 --requests "${TPUT_REQUESTS:-1024}" --prompt-len 64 --max-tokens 128 --out "$OUT/tput_${label}_short.json" | tail -2 ;;
        long) timeout $(cap 200) python3 bench/serve/loadgen.py --url "$URL" --procs "${LG_PROCS:-8}" --concurrency 256 \
                --requests "${TPUT_REQUESTS_LONG:-1024}" --prompt-len 2048 --max-tokens 128 --out "$OUT/tput_${label}_long.json" | tail -2 ;;
        one) timeout $(cap 200) python3 bench/serve/loadgen.py --url "$URL" --concurrency 1 --requests 32 --prompt-len 64 \
               --max-tokens 128 --out "$OUT/tput_${label}_one.json" | tail -2 ;;
      esac
      stepstats "$load"
    done
    kill -INT $SERVER; wait $SERVER
  done
fi

# TPUT36=1: the 3.6B shape (random fp16 weights made here, ~35 s) through the server:
# 256 concurrent short prompts (TPUT36_REQUESTS, default 512) and one stream.
if [ "${TPUT36:-0}" = 1 ]; then
  python3 - <<'PY' || echo "3.6b checkpoint failed"
import sys, torch
sys.path.insert(0, "tests/parity"); sys.path.insert(0, "bench/engine")
import oracle
from package_bench import SHAPES
sd = oracle.make_state_dict(SHAPES["3.6b"], 1234)
torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, "/tmp/m36.pth")
PY
  # TPUT36_BINS="rwkvx_base rwkvx": carried builds in turn (results tput36_<bin>_*.json);
  # an entry "bin:flag,value,..." adds server flags (tag tput36_<bin>_<n>). The batch flags
  # are TPUT_BATCH_FLAGS' (default "--max-batch-tokens 1024").
  n36=0
  for e36 in ${TPUT36_BINS:-rwkvx}; do
    b36=${e36%%:*}; f36=""; [[ $e36 == *:* ]] && f36=${e36#*:} && f36=${f36//,/ }
    n36=$((n36 + 1)); tag=tput36; [ -n "${TPUT36_BINS:-}" ] && tag=tput36_${b36}_$n36
    if BIN=$ROOT/.gpulibs/$b36 MODEL_PTH=/tmp/m36.pth serve $tag ${TPUT_BATCH_FLAGS---max-batch-tokens 1024} --max-queue 2048 $f36; then
      timeout $(cap 200) python3 bench/serve/loadgen.py --url "$URL" --procs "${LG_PROCS:-8}" --concurrency 256 \
        --requests "${TPUT36_REQUESTS:-512}" --prompt-len 64 --max-tokens 128 --out "$OUT/${tag}_short.json" | tail -2
      timeout $(cap 100) python3 bench/serve/loadgen.py --url "$URL" --concurrency 1 --requests 16 --prompt-len 64 \
        --max-tokens 128 --out "$OUT/${tag}_one.json" | tail -2
      curl -s "$URL/metrics" | grep -E '^rwkvx_(scheduler_seconds_total|step_seconds_total|steps_by_kind_total)' >"$OUT/$tag.metrics"
      kill -INT $SERVER; wait $SERVER
    fi
  done
fi

if [ "${LOAD:-1}" = 1 ]; then  # tests/load: 1000 SSE + 200 gRPC streams; auto picks the GPU
  timeout $(cap 400) python3 tests/load/load_test.py --bin "$BIN" --out "$OUT/load.json" >"$OUT/load.log" 2>&1
  echo "load rc=$?"; tail -12 "$OUT/load.log"
fi

if [ -n "${E2E-tests/e2e}" ]; then
  RWKVX_BIN=$BIN RWKVX_VOCAB=$VOCAB PYTHONUNBUFFERED=1 \
    timeout $(cap 480) python3 -m pytest -q -p no:cacheprovider --timeout $(cap 150) ${E2E-tests/e2e} >"$OUT/e2e.log" 2>&1
  echo "e2e rc=$?"; tail -15 "$OUT/e2e.log"
fi
