"""Initial states (--initial-state, RWKV-PEFT state-tuning layout) against the official
package: a random time_state file, the package run from a state whose RWKV blocks hold it
(zeros elsewhere), `rwkvx replay --initial-state` on the same script; logits of every call
within max |ours - ref| <= 1e-4 * max |ref|. Also: the file is not ignored (the logits
differ from a zero start), and a file of the wrong shape is refused by name."""
import json
import subprocess

import numpy as np
import pytest
from test_parity import TOL, REPLAY_FLAGS, script, shape

CASES = {
    "gen02_sparse": ("0.2", shape(), "fp32",
                     {"chunk_size": 4, "topk": 2, "full_attn_threshold": 10, "decode_attn_mode": "sparse"},
                     script(("seq", 7), ("one", 6), ("seq", 12), ("one", 3), seed=21)),
    "gen01_fp16_state": ("0.1", shape(n_rwkv_layer=3, n_attn_layer=1), "fp16",
                         {"chunk_size": 4, "topk": 2},
                         script(("seq", 9), ("one", 5), seed=22)),
}


def run_pair(tmp_path, rwkvx_bin, oracle_py, gen, shp, state_dtype, cfg, scr, seed):
    model = str(tmp_path / "m.pth")
    subprocess.run(oracle_py + ["make", "--out", model, "--shape", json.dumps(shp), "--seed", str(seed)],
                   check=True)
    state = str(tmp_path / "state.pth")
    subprocess.run(oracle_py + ["make-state", "--out", state, "--shape", json.dumps(shp),
                                "--dtype", state_dtype, "--seed", str(seed + 1)], check=True)
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(scr))

    def ours(extra):
        out = tmp_path / "ours.f32"
        cmd = [rwkvx_bin, "replay", "--model", model, "--script", str(sp), "--out", str(out),
               "--reference", gen, *extra]
        for k, v in cfg.items():
            cmd += [REPLAY_FLAGS[k], str(v)]
        subprocess.run(cmd, check=True)
        return np.fromfile(out, dtype="<f4").reshape(len(scr["calls"]), shp["vocab"])

    ref = tmp_path / "ref.f32"
    subprocess.run(oracle_py + ["run", "--gen", gen, "--model", model, "--script", str(sp), "--out", str(ref),
                                "--config", json.dumps(cfg), "--initial-state", state], check=True)
    a = np.fromfile(ref, dtype="<f4").reshape(len(scr["calls"]), shp["vocab"])
    return a, ours(["--initial-state", state]), ours([])


@pytest.mark.parametrize("name", sorted(CASES))
def test_initial_state_logits_match_package(name, tmp_path, rwkvx_bin, oracle_py):
    gen, shp, dtype, cfg, scr = CASES[name]
    ref, got, zero = run_pair(tmp_path, rwkvx_bin, oracle_py, gen, shp, dtype, cfg, scr, seed=31)
    for i in range(len(scr["calls"])):
        scale = float(np.abs(ref[i]).max())
        err = float(np.abs(ref[i] - got[i]).max())
        assert np.isfinite(got[i]).all()
        assert err <= TOL * scale, f"call {i}: max|diff| {err:.3g} > {TOL} * {scale:.3g}"
    # The state matters: the first call's logits move well past the tolerance.
    assert float(np.abs(got[0] - zero[0]).max()) > 100 * TOL * float(np.abs(got[0]).max())


def test_wrong_shape_is_refused_by_name(tmp_path, rwkvx_bin, oracle_py):
    shp = shape()
    model = str(tmp_path / "m.pth")
    subprocess.run(oracle_py + ["make", "--out", model, "--shape", json.dumps(shp)], check=True)
    state = str(tmp_path / "state.pth")
    other = dict(shp, n_rwkv_layer=shp["n_rwkv_layer"] + 1)  # one block too many
    subprocess.run(oracle_py + ["make-state", "--out", state, "--shape", json.dumps(other)], check=True)
    sp = tmp_path / "s.json"
    sp.write_text(json.dumps(script(("seq", 3))))
    r = subprocess.run([rwkvx_bin, "replay", "--model", model, "--script", str(sp), "--out",
                        str(tmp_path / "o.f32"), "--initial-state", state], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"blocks.{shp['n_rwkv_layer']}.att.time_state" in r.stderr and "RWKV blocks" in r.stderr, r.stderr
