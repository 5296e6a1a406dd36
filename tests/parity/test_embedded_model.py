"""The committed demo model (server/embedded/model.pth, the `rwkvx serve` default):
CPU engine vs the official package (0.1.3, "cpu fp32") with the model's own sparse
attention config, on a passkey prompt (prefill past W = chunk path, then sparse top-k
decode steps) and on a short chat prompt (full attention). Same bound as test_parity.py:
max |ours - ref| <= 1e-4 * max |ref| for every call."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
from data import encode, passkey_prompt  # noqa: E402

MODEL = os.path.join(REPO, "server", "embedded", "model.pth")
TOL = 1e-4


def run_both(tmp_path, rwkvx_bin, oracle_py, calls):
    cfg = json.load(open(MODEL + ".json"))
    scr = {"calls": calls}
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(scr))
    ref, ours = tmp_path / "ref.f32", tmp_path / "ours.f32"
    pkg_cfg = {"chunk_size": cfg["chunk_size"], "topk": cfg["topk"], "decode_attn_mode": "sparse"}
    assert cfg["full_attn_threshold"] == cfg["chunk_size"] * cfg["topk"]  # 0.1.3's fixed W
    subprocess.run(oracle_py + ["run", "--gen", "0.1", "--model", MODEL, "--script", str(sp),
                                "--out", str(ref), "--config", json.dumps(pkg_cfg)], check=True)
    subprocess.run([rwkvx_bin, "replay", "--model", MODEL, "--script", str(sp), "--out", str(ours),
                    "--moba-chunk-size", str(cfg["chunk_size"]), "--moba-topk", str(cfg["topk"])], check=True)
    a = np.fromfile(ref, dtype="<f4").reshape(len(calls), 257)
    b = np.fromfile(ours, dtype="<f4").reshape(len(calls), 257)
    for i in range(len(calls)):
        scale = float(np.abs(a[i]).max())
        err = float(np.abs(a[i] - b[i]).max())
        assert err <= TOL * scale, f"call {i}: max|diff| {err:.3g} > {TOL} * {scale:.3g}"
    return a


def test_passkey_prompt_matches_package(tmp_path, rwkvx_bin, oracle_py):
    key = 52917
    prompt = encode(passkey_prompt(1100, 0.3, key)).tolist()
    answer = encode(f" {key}").tolist()
    calls = [{"kind": "seq", "tokens": prompt[:900]}, {"kind": "seq", "tokens": prompt[900:]}]
    calls += [{"kind": "one", "tokens": [t]} for t in answer[:5]]
    ref = run_both(tmp_path, rwkvx_bin, oracle_py, calls)
    # Both engines retrieve the key (argmax of the last prefill call, then each decode).
    assert ref[1:].argmax(-1).tolist() == answer


def test_chat_prompt_matches_package(tmp_path, rwkvx_bin, oracle_py):
    prompt = encode("User: Write a sentence about the sea.\n\nAssistant:").tolist()
    calls = [{"kind": "seq", "tokens": prompt}]
    calls += [{"kind": "one", "tokens": [int(t)]} for t in encode(" The sea is")]
    run_both(tmp_path, rwkvx_bin, oracle_py, calls)
