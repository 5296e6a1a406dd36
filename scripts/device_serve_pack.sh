#!/usr/bin/env bash
# Here (no GPU): builds rwkvx with CUDA + server for sm_90a and copies it with the shared
# libraries the device image lacks into .gpulibs/ (git-ignored via .git/info/exclude),
# and downloads the openai client wheels for the device's Python 3.12 into .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DRWKVX_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90a-real -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-gpu -j2 --target rwkvx
rm -rf .gpulibs && mkdir -p .gpulibs
cp build-gpu/rwkvx .gpulibs/
ldd build-gpu/rwkvx | awk '/=> \//{print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' |
  grep -v '^/usr/local/cuda' | while read -r lib; do cp -L "$lib" .gpulibs/; done
strip .gpulibs/rwkvx .gpulibs/*.so* 2>/dev/null || true
# The device image has OpenSSL 3 (its Python links it); leaving it out keeps the carry
# under the device tool's 64 MiB limit.
rm -f .gpulibs/libcrypto.so.3 .gpulibs/libssl.so.3
du -sh .gpulibs
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "openai<2" "pydantic==2.11.7" "pydantic-core==2.33.2" distro "jiter<0.11" sniffio annotated-types \
  typing-inspection "typing-extensions>=4.14"
