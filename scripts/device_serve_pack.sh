#!/usr/bin/env bash
# Here (no GPU): builds rwkvx with CUDA + server for sm_90a and copies it with the shared
# libraries the device image lacks into .gpulibs/ (git-ignored via .git/info/exclude),
# and downloads the openai client wheels for the device's Python 3.12 into .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
# BUILD_DIR=build reuses the main build (its default architectures include sm_90a).
BUILD=${BUILD_DIR:-build-gpu}
if [ -z "${BUILD_DIR:-}" ]; then
  cmake -S . -B build-gpu -G Ninja -DRWKVX_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90a-real -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j2 --target rwkvx
rm -rf .gpulibs && mkdir -p .gpulibs
cp "$BUILD"/rwkvx .gpulibs/
cp ../shared/data/rwkv_vocab_v20230424.txt .gpulibs/
# With the main build, the engine's test and benchmark binaries travel too (the device
# scripts run them from .gpulibs/); BASE_BENCH=path adds an earlier bench_engine as
# bench_engine_base for a before/after ratio in the same call.
if [ -n "${BUILD_DIR:-}" ] && [ -x "$BUILD/tests/cuda_tests" ]; then
  cmake --build "$BUILD" -j2 --target cuda_tests bench_engine bench_parity
  cp "$BUILD/tests/cuda_tests" "$BUILD/bench/engine/bench_engine" "$BUILD/bench/engine/bench_parity" .gpulibs/
  [ -n "${BASE_BENCH:-}" ] && cp "$BASE_BENCH" .gpulibs/bench_engine_base
fi
# BASE_SERVE=path: an earlier rwkvx as .gpulibs/rwkvx_base (TPUT_VARIANTS="old@rwkvx_base:...").
[ -n "${BASE_SERVE:-}" ] && cp "$BASE_SERVE" .gpulibs/rwkvx_base
for b in .gpulibs/rwkvx .gpulibs/cuda_tests .gpulibs/bench_engine .gpulibs/bench_parity; do [ -x "$b" ] && ldd "$b"; done | sort -u | awk '/=> \//{print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
  grep -v '^/usr/local/cuda' | while read -r lib; do cp -L "$lib" .gpulibs/; done
strip .gpulibs/rwkvx .gpulibs/rwkvx_base .gpulibs/*.so* 2>/dev/null || true
# The device image has OpenSSL 3 (its Python links it); leaving it out keeps the carry
# under the device tool's 64 MiB limit.
rm -f .gpulibs/libcrypto.so.3 .gpulibs/libssl.so.3
du -sh .gpulibs
rm -rf .whl
# The e2e suite's clients, at the versions of .venv (scripts/setup.sh), for Python 3.12.
# Without the test venv (a checkout set up with SKIP_VENV=1) there are no versions to
# match: no .whl, which only the e2e stage of device_serve_e2e.sh needs (the targets table
# and the engine A/B do not).
if [ -x .venv/bin/python ]; then
  PKGS="openai pydantic pydantic-core jiter distro sniffio annotated-types typing-inspection typing-extensions
    httpx httpcore httpx2 httpcore2 h11 idna truststore anyio certifi grpcio grpcio-tools grpcio-health-checking
    grpcio-reflection protobuf pytest-timeout"
  specs=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | python3 -c '
import sys
want = set(sys.argv[1].split())
norm = lambda n: n.lower().replace("_", "-")
print(" ".join(l.strip() for l in sys.stdin if norm(l.split("==")[0]) in want))' "$PKGS")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $specs
  du -sh .whl
else
  echo "device_serve_pack: no .venv (scripts/setup.sh without SKIP_VENV makes it): no .whl for the e2e stage" >&2
fi
# The carry limit is 64 MiB for the tracked tree and every carried path together: the
# libraries travel xz-compressed (unpacked there by the device scripts, scripts/device_lib.sh).
# PACK_BINS picks the programs that go in (default: all of .gpulibs' programs); the rest of
# .gpulibs (the libraries, the vocabulary) always does. Compressed (xz, session 31's build):
# bench_engine 10.5 MB, bench_parity 10.6, cuda_tests 11.0, rwkvx 20.9, the libraries and
# vocabulary 9.1; in session 31 rwkvx + cuda_tests + bench_engine
# + bench_parity + bench_engine_base made 76 MB, over the limit, while
# PACK_BINS="cuda_tests bench_engine bench_engine_base" (an engine A/B) made 40 MB and
# "rwkvx bench_engine" (scripts/device_targets.sh) 40 MB.
progs="rwkvx rwkvx_base cuda_tests bench_engine bench_engine_base bench_parity"
files=()
for f in .gpulibs/*; do
  n=${f#.gpulibs/}
  if [[ " $progs " == *" $n "* ]] && [ -n "${PACK_BINS:-}" ] && [[ " $PACK_BINS " != *" $n "* ]]; then continue; fi
  files+=("$f")
done
rm -rf .gpupack && mkdir -p .gpupack
tar -cJf .gpupack/gpulibs.tar.xz "${files[@]}"
du -sh .gpupack
pack=$(stat -c %s .gpupack/gpulibs.tar.xz)
tree=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
echo "device_serve_pack: pack $((pack / 1000000)) MB + tracked tree $((tree / 1000000)) MB of the 67 MB (64 MiB) a call carries"
if [ $((pack + tree)) -gt $((64 * 1024 * 1024 - 2 * 1000 * 1000)) ]; then
  echo "device_serve_pack: WARNING: with the tree this pack leaves < 2 MB of the device tool's 64 MiB (other carried paths, e.g. .venv/oracle/0.1, need ~1.3 MB): pick fewer programs with PACK_BINS" >&2
fi
