#!/usr/bin/env bash
# Runs on the lent GPU machine (the `device` tool), from the repository root. Stages:
#   build     configure + build cuda_tests and bench_engine there (needs the -dev packages)
#   tests     cuda_tests (every CUDA test; parity vs the CPU reference, batch invariance...)
#   sanitize  compute-sanitizer memcheck + racecheck on the small kernel-heavy tests
#   bench     bench/engine on the 0.2B shape, then the 3.6B shape (BENCH_SHAPES to change)
#   package   the official rwkv-x package on the same shapes (bench/engine/package_bench.py)
#   bench-base  bench_engine of an earlier build ($BIN/bench_engine_base, carried) on the
#             same shapes, for a before/after ratio in the same call (base_<shape>.*)
# Binaries come from $BIN (default .devbin: built here by scripts/device_prepare.sh with
# the libraries they need) or from build-device after `build`. Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/rwkvx-out}
mkdir -p "$OUT"
BIN=${BIN:-.devbin}
export LD_LIBRARY_PATH="$PWD/$BIN/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
stages=${*:-tests sanitize bench}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
if [ -x "$BIN/cuda_tests" ]; then ldd "$BIN/cuda_tests" | grep -i "not found" && echo "missing libraries"; fi

run_bench() {  # run_bench BINARY PREFIX: the engine benchmark on each shape -> $OUT/PREFIX_<shape>.*
  local bin=$1 prefix=$2 shape extra
  for shape in ${BENCH_SHAPES:-0.2b 3.6b}; do
    extra=""
    [ "$shape" = "0.2b" ] && extra="--decode-ctx ${DECODE_CTX_02:-1K,8K,32K,64K,128K,1M}"
    [ "$shape" = "3.6b" ] && extra="--decode-ctx ${DECODE_CTX_36:-1K,8K,32K,64K} --batch 1,16,64,256 --mem-ctx 8K,20000"
    timeout ${BENCH_TIMEOUT:-280} "$bin" --shape "$shape" $extra --json "$OUT/${prefix}_$shape.json" 2>&1 | tee "$OUT/${prefix}_$shape.txt"
  done
}

for stage in $stages; do
  case $stage in
    build)
      cmake -S . -B build-device -G Ninja -DRWKVX_SERVER=OFF -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES=90a-real > "$OUT/build.log" 2>&1 &&
        cmake --build build-device -j16 --target cuda_tests bench_engine >> "$OUT/build.log" 2>&1 ||
        { tail -40 "$OUT/build.log"; exit 1; }
      BIN=build-device; mkdir -p build-device/lib
      cp build-device/tests/cuda_tests build-device/bench/engine/bench_engine build-device/ 2>/dev/null
      ;;
    tests)
      timeout ${TESTS_TIMEOUT:-300} "$BIN/cuda_tests" 2>&1 | tee "$OUT/cuda_tests.log" | grep -E "^\[(parity|greedy|batch)|OK \]|FAILED|PASSED|SKIPPED|Failure|error" ;;
    sanitize)
      F='CudaBackend.FullAttentionParity:CudaBackend.SparsePathsParity:CudaBackend.CompressionParity:CudaBackend.SnapshotRoundTrip:CudaKernels.*:CudaSample.*'
      timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 "$BIN/cuda_tests" --gtest_filter="$F" \
        > "$OUT/memcheck.log" 2>&1; echo "memcheck exit $?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log"
      F2='CudaKernels.*:CudaBackend.RejectsBadSteps:CudaSample.MatchesHostSampler*'
      timeout ${SAN_TIMEOUT:-240} compute-sanitizer --tool racecheck --error-exitcode 9 "$BIN/cuda_tests" --gtest_filter="$F2" \
        > "$OUT/racecheck.log" 2>&1; echo "racecheck exit $?"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED" "$OUT/racecheck.log" ;;
    bench) run_bench "$BIN/bench_engine" bench ;;
    bench-base) run_bench "$BIN/bench_engine_base" base ;;
    profile)
      # Per-kernel times of one prefill step (0.2B shape, PROFILE_T tokens) under Nsight Compute.
      if [ -n "${PROFILE_DECODE_CTX:-}" ]; then
        RWKVX_PROFILE_DECODE=$PROFILE_DECODE_CTX timeout ${PROFILE_TIMEOUT:-200} ncu --profile-from-start off \
          --print-summary per-kernel --metrics gpu__time_duration.sum "$BIN/bench_engine" --shape 0.2b --cuda-graphs 0 \
          > "$OUT/profile.txt" 2>&1
      else
        RWKVX_PROFILE_PREFILL=${PROFILE_T:-4096} timeout ${PROFILE_TIMEOUT:-200} ncu --profile-from-start off \
          --print-summary per-kernel --metrics gpu__time_duration.sum "$BIN/bench_engine" --shape 0.2b \
          > "$OUT/profile.txt" 2>&1
      fi
      echo "profile exit $?"
      python3 scripts/ncu_summary.py "$OUT/profile.txt" | tee "$OUT/profile_summary.txt"
      ;;
    package)
      # The official package (rwkv-x 0.1.x, cuda fp16, RWKV_CUDA_ON=1) on the same shapes;
      # its folder is carried from .venv/oracle/0.1 (scripts/setup.sh installs it there).
      for shape in ${PKG_SHAPES:-0.2b}; do
        PYTHONUNBUFFERED=1 timeout ${PKG_TIMEOUT:-200} python3 bench/engine/package_bench.py --shape "$shape" \
          --decode-ctx "${PKG_DECODE_CTX:-1K,8K,32K}" --prefill "${PKG_PREFILL:-1K,4K,16K}" \
          --json "$OUT/package_$shape.json" > "$OUT/package_$shape.txt" 2>&1
        echo "package $shape exit $?"; grep -vE "^\s*$|ptxas|nvcc|ninja|\[[0-9]+/[0-9]+\]|Emitting|Building|Loading|Using|Detected|Allowing|No modifications|Compiling|c\+\+|g\+\+" "$OUT/package_$shape.txt" | tail -20
      done ;;
  esac
done
