#!/usr/bin/env bash
# Runs on the device machine: a long named session built through the server's HTTP API on
# the CUDA backend (bench/long_session/long_session.py), on a random-weight checkpoint of
# the released 0.2B shape made there with its PyTorch (tests/parity/oracle.py). Expects
# rwkvx and the libraries the device image lacks in .gpulibs/ (see
# scripts/device_serve_pack.sh). Results: $OUT/long_session.json and the server log.
#   CHECKPOINTS=1K,64K,256K,1M scripts/device_long_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
python3 - <<'PY' || exit 1
import sys, torch
sys.path.insert(0, "tests/parity"); sys.path.insert(0, "bench/engine")
import oracle
from package_bench import SHAPES
torch.save(oracle.make_state_dict(SHAPES["0.2b"], 1234), "/tmp/m02.pth")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/long_session/long_session.py --bin ./.gpulibs/rwkvx \
  --server-args "--backend cuda --model /tmp/m02.pth --tokenizer bytes ${SERVER_ARGS:-}" \
  --checkpoints "${CHECKPOINTS:-1K,64K,256K,1M}" --chunk "${CHUNK:-32768}" --gen "${GEN:-64}" \
  --label "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), 0.2B random weights, CUDA backend" \
  --out "$OUT/long_session.json"
