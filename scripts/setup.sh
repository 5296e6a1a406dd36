#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks, creates the test venv, configures and
# builds. Idempotent: a second run only rebuilds what changed.
#   scripts/setup.sh            # deps + venv + build (build/)
#   SKIP_VENV=1 scripts/setup.sh   # deps + build only (enough to serve)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

APT_PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev nlohmann-json3-dev libboost-dev libboost-system-dev libopenblas-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libssl-dev
  clang libclang-rt-14-dev prometheus python3-venv json-schema-test-suite)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${SKIP_VENV:-0}" != 1 ]; then
  # The test venv is ~7.5 GB installed (torch from PyPI brings its CUDA 12 libraries); pip's
  # wheel cache would hold another ~3.5 GB copy of the same bytes, so it is off unless the
  # caller set PIP_NO_CACHE_DIR. Say how much room there is before starting, so that a full
  # disk shows as such rather than as a pip traceback halfway through.
  export PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1}
  free_gb=$(df -Pk . | awk 'NR==2 {printf "%d", $4 / 1048576}')
  if [ ! -x .venv/bin/python ] && [ "${free_gb:-0}" -lt 12 ]; then
    echo "setup: warning: ${free_gb} GB free on $(df -P . | awk 'NR==2 {print $6}'); the test venv"\
         "needs ~8 GB and the builds (plain, sanitizers, fuzz) ~3 GB more" >&2
  fi
  PY=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
  fi
  # pip unpacks each wheel under TMPDIR before installing it (torch's CUDA libraries: over
  # 3 GB at once): keep that on the venv's filesystem, not on a /tmp that may be a small
  # tmpfs, and say where the room ran out if it does.
  export TMPDIR="$PWD/.cache/pip-tmp"
  mkdir -p "$TMPDIR"
  pip_in() {
    if ! .venv/bin/pip install -q "$@"; then
      echo "setup: pip install $* failed; free space:" >&2
      df -h . /tmp >&2 || true
      exit 1
    fi
  }
  pip_in --upgrade pip
  pip_in -r scripts/requirements-test.txt
  # The official package, both generations, each in its own folder (see docs/MODEL.md).
  for spec in "0.1=rwkv-x==0.1.3" "0.2=rwkv-x==0.2.4"; do
    gen=${spec%%=*}; req=${spec#*=}
    if [ ! -f ".venv/oracle/$gen/rwkv_x/model.py" ]; then
      pip_in --no-deps --target ".venv/oracle/$gen" "$req"
    fi
  done
  rm -rf "$TMPDIR"
  unset TMPDIR
fi

BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} ${CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$(nproc)"
