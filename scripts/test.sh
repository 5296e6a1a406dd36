#!/usr/bin/env bash
# The whole test suite: set up (deps, venv, build), then unit tests (ctest), parity with
# the official package, tokenizer parity, end-to-end server tests, the load test
# (tests/load), the sanitizer stage (scripts/test_sanitizers.sh), and a bounded fuzz run.
# Usage: scripts/test.sh            (FUZZ_SECONDS=N to change the per-target fuzz time;
#        SKIP_LOAD=1, SKIP_SANITIZERS=1, SKIP_FUZZ=1 skip those stages)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Each stage's wall time, printed at the end (CI must finish within 90 minutes).
stage_times=()
T_STAGE=$SECONDS
stage_done() { stage_times+=("$(printf '%-36s %5ds' "$1" $((SECONDS - T_STAGE)))"); T_STAGE=$SECONDS; }
trap 'echo "== stage times (so far)"; printf "  %s\n" "${stage_times[@]}"' EXIT
scripts/setup.sh
stage_done "setup + build"

export RWKVX_BIN=$ROOT/build/rwkvx
export RWKVX_VOCAB=${RWKVX_VOCAB:-$ROOT/../shared/data/rwkv_vocab_v20230424.txt}
export RWKVX_DEMO_CHAT=${RWKVX_DEMO_CHAT:-$ROOT/../shared/data/demo-chat.jsonl}
export RWKVX_ORACLE_01=$ROOT/.venv/oracle/0.1
export RWKVX_ORACLE_02=$ROOT/.venv/oracle/0.2
export PYTHONUNBUFFERED=1
scripts/check_deploy.sh  # Dockerfile, deploy/ manifests, Envoy configs (docs/DEPLOY.md)
stage_done "deploy checks"

echo "== unit tests (ctest)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
stage_done "unit tests"

echo "== python tests (training maths, parity, tokenizer, e2e, grammar)"
dirs=()
for d in tests/train tests/parity tests/e2e tests/grammar; do
  ls $d/test_*.py >/dev/null 2>&1 && dirs+=("$d")
done
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "${dirs[@]}"
stage_done "python tests"

if [ "${SKIP_LOAD:-0}" != 1 ]; then
  echo "== load test (tests/load: 1000 SSE + 200 gRPC streams, loopback)"
  .venv/bin/python tests/load/load_test.py --bin "$RWKVX_BIN"
  stage_done "load test"
fi

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== sanitizers (ASan+UBSan: unit, parity, e2e; TSan: scheduler, frontends)"
  scripts/test_sanitizers.sh
  stage_done "sanitizers"
fi

if [ -x tests/fuzz/run_fuzz.sh ] && [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (bounded)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} tests/fuzz/run_fuzz.sh
  stage_done "fuzz"
fi
echo "== all tests passed"
