"""The training model (tools/train/model.py) computes what the official package computes
on its exported checkpoint: same keys, same math (dense attention = the package's prefill
while T <= W; local = its chunk path; decode-style answer rows = its forward_one)."""
import os
import subprocess
import sys
import json

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools", "train"))
from export import export  # noqa: E402
from model import RwkvX  # noqa: E402

ORACLE = os.path.join(REPO, "tests", "parity", "oracle.py")
ORACLE_DIR = os.environ.get("RWKVX_ORACLE_01", os.path.join(REPO, ".venv", "oracle", "0.1"))


def perturbed_model(seed):
    torch.manual_seed(seed)
    m = RwkvX(C=128, R=2, M=2, ranks=(16, 16, 8, 16))
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if p.dim() < 2 else 0.05))
    # Round-trip through fp16 so both sides see the same weights.
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.half().float())
    return m


def package_logits(tmp_path, m, calls, cfg):
    path = str(tmp_path / "m.pth")
    export(m, path, dict(chunk=cfg["chunk_size"], topk=cfg["topk"], threshold=cfg["chunk_size"] * cfg["topk"]))
    script = str(tmp_path / "s.json")
    json.dump({"calls": calls}, open(script, "w"))
    out = str(tmp_path / "l.f32")
    subprocess.run([sys.executable, ORACLE, "run", "--gen", "0.1", "--model", path, "--script", script,
                    "--out", out, "--config", json.dumps(cfg)], check=True)
    return np.fromfile(out, dtype="<f4").reshape(len(calls), -1)


@pytest.mark.skipif(not os.path.exists(os.path.join(ORACLE_DIR, "rwkv_x", "model.py")), reason="no oracle package")
def test_training_model_matches_package(tmp_path):
    m = perturbed_model(0)
    g = torch.Generator().manual_seed(1)
    T = 48
    ids = torch.randint(1, 257, (1, T + 3), generator=g)
    sp = dict(chunk=8, topk=2, threshold=16)
    # (a) dense: one prefill of 12 tokens (T <= W = 16): full causal attention.
    with torch.no_grad():
        dense = m(ids[:, :12], mode="dense")[0, -1].numpy()
    ref = package_logits(tmp_path, m, [{"kind": "seq", "tokens": ids[0, :12].tolist()}],
                         {"chunk_size": 8, "topk": 2, "decode_attn_mode": "sparse"})
    assert np.abs(dense - ref[0]).max() <= 1e-3 * np.abs(ref[0]).max()
    # (b) local prefill of T tokens (> W: chunk path), then 3 decode steps with top-k chunk
    # selection (CT > W): the answer rows of the training model.
    ans = torch.tensor([[T, T + 1, T + 2]])
    with torch.no_grad():
        out = m(ids[:, :T + 3], mode="local", ans=ans, ans_mode="topk", sp=sp)[0].numpy()
    calls = [{"kind": "seq", "tokens": ids[0, :T].tolist()}] + \
            [{"kind": "one", "tokens": [int(ids[0, t])]} for t in range(T, T + 3)]
    ref = package_logits(tmp_path, m, calls, {"chunk_size": 8, "topk": 2, "decode_attn_mode": "sparse"})
    mine = np.stack([out[T - 1], out[T], out[T + 1], out[T + 2]])
    assert np.abs(mine - ref).max() <= 1e-3 * np.abs(ref).max()
