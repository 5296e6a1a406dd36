"""CPU engine vs the official rwkv-x package (strategy "cpu fp32"), logits of every call.

Each case writes a random checkpoint in the official layout, runs the same token script
through the package and through `rwkvx replay`, and checks
max |ours - ref| <= 1e-4 * max |ref| for every call.
"""
import json
import os
import random
import subprocess
import zlib

import numpy as np
import pytest

TOL = 1e-4

SMALL = dict(vocab=512, n_embd=128, n_rwkv_layer=4, n_attn_layer=2, ffn_dim=512,
             rank_w=16, rank_a=16, rank_v=8, rank_g=32)


def shape(**kw):
    s = dict(SMALL)
    s.update(kw)
    return s


def script(*calls, seed=0, vocab=512):
    rng = random.Random(seed)
    out = []
    for kind, n in calls:
        for _ in range(n if kind == "one" else 1):
            toks = [rng.randrange(vocab)] if kind == "one" else [rng.randrange(vocab) for _ in range(n)]
            out.append({"kind": kind, "tokens": toks})
    return {"calls": out}


REPLAY_FLAGS = {
    "chunk_size": "--moba-chunk-size", "topk": "--moba-topk",
    "full_attn_threshold": "--full-attn-threshold", "max_kv_cache_size": "--max-kv-cache-size",
    "kv_cache_window_size": "--kv-cache-window-size", "min_kv_cache_size": "--min-kv-cache-size",
    "decode_attn_mode": "--attn-mode", "prefill_attn_mode": "--prefill-attn-mode",
}

# name: (gen, shape, dtype, plain, config, script)
CASES = {
    "rwkv7_plain": ("0.1", shape(n_attn_layer=0, n_rwkv_layer=3), "fp32", True, {},
                    script(("seq", 12), ("one", 5), ("seq", 7), ("one", 3))),
    "one_sparse_block_last": ("0.1", shape(n_rwkv_layer=2, n_attn_layer=1), "fp32", False, {},
                              script(("seq", 9), ("one", 4), ("seq", 5), ("one", 2), seed=1)),
    "interleaved_4x2": ("0.1", shape(n_rwkv_layer=4, n_attn_layer=2), "fp32", False, {},
                        script(("seq", 16), ("one", 6), seed=2)),
    "r_mod_m_nonzero": ("0.1", shape(n_rwkv_layer=5, n_attn_layer=2), "fp32", False, {},
                        script(("seq", 10), ("one", 4), seed=3)),
    "decode_crosses_full_to_sparse": (
        "0.1", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2}, script(("seq", 6), ("one", 20), seed=4)),
    "long_prefill_chunk_local": (
        "0.1", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 8, "topk": 2}, script(("seq", 45), ("seq", 21), ("one", 6), seed=5)),
    "compression_in_decode": (
        "0.1", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2, "max_kv_cache_size": 24, "kv_cache_window_size": 4,
         "min_kv_cache_size": 12}, script(("seq", 20), ("one", 30), seed=6)),
    "compression_in_prefill": (
        "0.1", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2, "max_kv_cache_size": 24, "kv_cache_window_size": 4,
         "min_kv_cache_size": 12}, script(("seq", 30), ("seq", 7), ("one", 3), ("seq", 26), ("seq", 5), seed=7)),
    "attn_mode_full": (
        "0.1", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2, "decode_attn_mode": "full"}, script(("seq", 20), ("one", 12), seed=8)),
    "fp16_checkpoint": ("0.1", shape(), "fp16", False, {"chunk_size": 4, "topk": 2},
                        script(("seq", 14), ("one", 6), seed=9)),
    "bf16_checkpoint": ("0.1", shape(), "bf16", False, {"chunk_size": 4, "topk": 2},
                        script(("seq", 14), ("one", 6), seed=10)),
    "gen02_defaults_short": ("0.2", shape(), "fp32", False, {},
                             script(("seq", 12), ("one", 5), seed=11)),
    "gen02_sparse_decode_threshold": (
        "0.2", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2, "full_attn_threshold": 10, "decode_attn_mode": "sparse"},
        script(("seq", 6), ("one", 16), ("seq", 13), ("one", 3), seed=12)),
    "gen02_prefill_full_and_compression": (
        "0.2", shape(n_rwkv_layer=2, n_attn_layer=2), "fp32", False,
        {"chunk_size": 4, "topk": 2, "full_attn_threshold": 10, "prefill_attn_mode": "full",
         "decode_attn_mode": "sparse", "max_kv_cache_size": 24, "kv_cache_window_size": 4,
         "min_kv_cache_size": 12}, script(("seq", 30), ("seq", 9), ("one", 20), seed=13)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_match_package(name, tmp_path, rwkvx_bin, oracle_py):
    gen, shp, dtype, plain, cfg, scr = CASES[name]
    model = str(tmp_path / "m.pth")
    mk = oracle_py + ["make", "--out", model, "--shape", json.dumps(shp), "--dtype", dtype,
                      "--seed", str(zlib.crc32(name.encode()) % 1000)]
    if plain:
        mk.append("--plain")
    subprocess.run(mk, check=True)
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(scr))
    ref = tmp_path / "ref.f32"
    subprocess.run(oracle_py + ["run", "--gen", gen, "--model", model, "--script", str(sp),
                                "--out", str(ref), "--config", json.dumps(cfg)], check=True)
    ours = tmp_path / "ours.f32"
    cmd = [rwkvx_bin, "replay", "--model", model, "--script", str(sp), "--out", str(ours),
           "--reference", gen]
    for k, v in cfg.items():
        cmd += [REPLAY_FLAGS[k], str(v)]
    subprocess.run(cmd, check=True)
    a = np.fromfile(ref, dtype="<f4").reshape(len(scr["calls"]), shp["vocab"])
    b = np.fromfile(ours, dtype="<f4").reshape(len(scr["calls"]), shp["vocab"])
    for i in range(len(scr["calls"])):
        scale = float(np.abs(a[i]).max())
        err = float(np.abs(a[i] - b[i]).max())
        assert np.isfinite(b[i]).all(), f"call {i}: non-finite logits"
        assert err <= TOL * scale, f"call {i} ({scr['calls'][i]['kind']}): max|diff| {err:.3g} > {TOL} * {scale:.3g}"
