#!/usr/bin/env bash
# Run HERE (no GPU needed): builds cuda_tests and bench_engine for sm_90a in build-dev and
# copies them, with the shared libraries the GPU machine lacks (abseil, OpenBLAS, gtest...),
# into .devbin/ (git-ignored by .gitignore; carry it to the `device` tool by name).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-dev -G Ninja -DRWKVX_SERVER=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real >/dev/null
cmake --build build-dev -j"${JOBS:-2}" --target cuda_tests bench_engine
rm -rf .devbin && mkdir -p .devbin/lib
cp build-dev/tests/cuda_tests build-dev/bench/engine/bench_engine .devbin/
strip .devbin/cuda_tests .devbin/bench_engine
# Everything outside glibc/libstdc++/CUDA (the GPU machine has its own of those).
for b in .devbin/cuda_tests .devbin/bench_engine; do
  ldd "$b" | awk '/=>/ {print $3}' | grep -vE 'libc\.so|libm\.so|libstdc\+\+|libgcc_s|ld-linux|libpthread|libdl\.so|librt\.so|libcuda|libcublas|libcudart' |
    while read -r l; do cp -L "$l" .devbin/lib/; done
done
du -sh .devbin
