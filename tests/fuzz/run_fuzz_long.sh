#!/usr/bin/env bash
# Long fuzz runs: every target (or FUZZ_TARGETS) for FUZZ_SECONDS (default 300) each, with
# a persistent corpus under build-fuzz/corpus-long/<target> (seeded from tests/fuzz/corpus,
# grows across runs), FUZZ_JOBS parallel workers (default 1). Prints the table of
# executions and coverage (cov = covered edges, ft = libFuzzer features) and writes
# build-fuzz/fuzz_summary.json; docs/RELIABILITY.md records the last long run.
#   tests/fuzz/run_fuzz_long.sh
#   FUZZ_SECONDS=3600 FUZZ_TARGETS="openai_request_fuzz proto_request_fuzz" tests/fuzz/run_fuzz_long.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
export FUZZ_CORPUS_DIR="${FUZZ_CORPUS_DIR:-${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}/corpus-long}"
mkdir -p "$FUZZ_CORPUS_DIR"
exec "$ROOT/tests/fuzz/run_fuzz.sh"
