#!/usr/bin/env bash
# Runs on the device machine (see docs/CUDA.md): `rwkvx serve --backend cuda` on the
# embedded model, then the official openai client streams a completion from it.
# Expects build outputs carried in .gpulibs/ (rwkvx + the shared libraries it needs that
# the device image lacks) and the openai wheels in .whl/ (scripts/device_serve_pack.sh).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
export LD_LIBRARY_PATH=$PWD/.gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi -L
rm -f /tmp/ports.json
./.gpulibs/rwkvx serve --backend cuda --http-port 0 --grpc-port 0 --port-file /tmp/ports.json >"$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -s /tmp/ports.json ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
head -20 "$OUT/serve.log"
rc=1
if [ -s /tmp/ports.json ]; then
  python3 scripts/device_serve_smoke.py /tmp/ports.json; rc=$?
fi
kill -TERM $pid 2>/dev/null; wait $pid
tail -5 "$OUT/serve.log"
exit $rc
