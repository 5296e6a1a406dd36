#!/usr/bin/env bash
# Builds the checkpoint-reader libFuzzer targets in build-fuzz/ (clang, ASan + UBSan) and
# runs each for a bounded time on a scratch copy of its committed seed corpus.
#   tests/fuzz/run_fuzz.sh                 # 60 s per target
#   FUZZ_SECONDS=300 tests/fuzz/run_fuzz.sh
#   FUZZ_TARGETS=fuzz_pth tests/fuzz/run_fuzz.sh   # default: every target tests/fuzz builds
#   FUZZ_CORPUS_DIR=DIR tests/fuzz/run_fuzz.sh    # keep each target's corpus in DIR/<target>
#                                                  # (default: a scratch copy, deleted)
# Exit status: non-zero when a build fails or a target finds a crash, leak, timeout or
# out-of-memory input (the reproducer is saved under build-fuzz/fuzz-artifacts/).
# At the end: a table of executions and coverage per target (libFuzzer's final "cov:"
# = covered edges, "ft:" = features), also written as JSON to $BUILD/fuzz_summary.json.
# tests/fuzz/run_fuzz_long.sh runs the same for minutes per target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
JOBS="${FUZZ_JOBS:-1}"

CC_BIN="${CC_FUZZ:-$(command -v clang || command -v clang-14)}"
CXX_BIN="${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14)}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" \
  -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DRWKVX_FUZZ=ON -DRWKVX_TESTS=ON -DRWKVX_SERVER=OFF -DRWKVX_CUDA=OFF >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log"; exit 1; }
TARGETS="${FUZZ_TARGETS:-$(cat "$BUILD/fuzz_targets.txt")}"
# shellcheck disable=SC2086
cmake --build "$BUILD" --target $TARGETS
cd "$ROOT"  # some targets look for data relative to the working directory

mkdir -p "$BUILD/fuzz-artifacts"
status=0
summary=()
for t in $TARGETS; do
  if [ -n "${FUZZ_CORPUS_DIR:-}" ]; then
    work="$FUZZ_CORPUS_DIR/$t"; mkdir -p "$work"
  else
    work="$(mktemp -d)"
  fi
  if [ -d "$ROOT/tests/fuzz/corpus/$t" ]; then cp -n "$ROOT/tests/fuzz/corpus/$t/"* "$work/"; fi
  dict=()
  case "$t" in
    fuzz_pth) dict=(-dict="$ROOT/tests/fuzz/pth.dict") ;;
    fuzz_safetensors) dict=(-dict="$ROOT/tests/fuzz/safetensors.dict") ;;
    grammar_fuzz) dict=(-dict="$ROOT/tests/fuzz/grammar.dict") ;;
  esac
  par=()
  [ "$JOBS" -gt 1 ] && par=(-fork="$JOBS")
  echo "== $t: ${SECONDS_EACH}s, seeds $(ls "$work" | wc -l)"
  set +e
  "$BUILD/tests/fuzz/$t" "$work" "${dict[@]}" \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=65536 "${par[@]}" -print_final_stats=1 \
    -artifact_prefix="$BUILD/fuzz-artifacts/$t-" 2>&1 | tee "$BUILD/$t.log" |
    grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)"
  # (no "|| true" here: with pipefail it would run and reset PIPESTATUS to the true's 0)
  rc=${PIPESTATUS[0]}
  set -e
  echo "== $t: exit $rc, corpus now $(ls "$work" | wc -l) inputs"
  [ "$rc" -eq 0 ] || status=1
  summary+=("$(python3 - "$t" "$BUILD/$t.log" "$rc" "$SECONDS_EACH" "$(ls "$work" | wc -l)" <<'PY'
import json, re, sys
t, log, rc, secs, corpus = sys.argv[1:]
text = open(log, errors="replace").read()
def last(pat):
    m = re.findall(pat, text)
    return int(m[-1]) if m else None
print(json.dumps({"target": t, "seconds": int(secs), "exit": int(rc),
                  "executions": last(r"stat::number_of_executed_units:\s+(\d+)"),
                  "exec_per_s": last(r"stat::average_exec_per_sec:\s+(\d+)"),
                  "cov_edges": last(r"cov: (\d+)"), "features": last(r"ft: (\d+)"),
                  "corpus_inputs": int(corpus)}))
PY
)")
  [ -n "${FUZZ_CORPUS_DIR:-}" ] || rm -rf "$work"
done
printf '%s\n' "${summary[@]}" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
json.dump(rows, open(sys.argv[1], "w"), indent=1)
print("| target | seconds | executions | exec/s | cov (edges) | features | corpus | exit |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| {target} | {seconds} | {executions} | {exec_per_s} | {cov_edges} | {features} | {corpus_inputs} | {exit} |".format(**r))
' "$BUILD/fuzz_summary.json"
exit $status
