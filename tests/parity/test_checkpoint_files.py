"""Checkpoint reader parity: tensors written by torch.save must read back bit for bit.

Each case torch.saves a dict, runs `rwkvx inspect --model f.pth --values out.safetensors`,
then compares the JSON listing (names, dtypes, shapes) and every value (raw bytes of the
dense row-major tensor, so NaN payloads and -0 count) with torch.

    RWKVX_BIN=build/rwkvx /tmp/venv/bin/python -m pytest tests/parity/test_checkpoint_files.py
Needs only numpy, torch and pytest. RWKVX_BIG_TESTS=1 adds a >4 GiB (zip64) checkpoint.
"""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("RWKVX_BIN", str(ROOT / "build" / "rwkvx"))
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

pytestmark = pytest.mark.skipif(not Path(BIN).exists(), reason=f"rwkvx binary not found at {BIN} (set RWKVX_BIN)")


def run_inspect(path, values=None):
    cmd = [BIN, "inspect", "--model", str(path)]
    if values is not None:
        cmd += ["--values", str(values)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def read_safetensors(path):
    """Minimal reader: {name: (dtype_name, shape, raw bytes)}."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    buf = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], buf[b:e])
    return out


def raw_bytes(t):
    t = t.detach().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def check_roundtrip(tmp_path, sd, **save_kw):
    f = tmp_path / "ckpt.pth"
    torch.save(sd, f, **save_kw)
    vals = tmp_path / "values.safetensors"
    r = run_inspect(f, vals)
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert listing["num_tensors"] == len(sd)
    rows = {row["name"]: row for row in listing["tensors"]}
    assert set(rows) == set(sd)
    got = read_safetensors(vals)
    assert set(got) == set(sd)
    for name, t in sd.items():
        dtype, shape, data = got[name]
        assert DTYPES[dtype] == t.dtype, name
        assert rows[name]["dtype"] == dtype and rows[name]["shape"] == list(t.shape), name
        assert shape == list(t.shape), name
        assert data == raw_bytes(t), f"values differ for {name}"
        # And through float32, as the engine will use them.
        if t.numel():
            np.testing.assert_array_equal(
                torch.frombuffer(bytearray(data), dtype=t.dtype).float().numpy(),
                t.detach().float().reshape(-1).numpy())
    return listing


def special_values(dtype):
    v = [0.0, -0.0, 1.0, -1.5, float("inf"), float("-inf"), float("nan"), 1e-8, -3e-41, 65504.0, 1e30]
    return torch.tensor(v, dtype=torch.float32).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtypes_and_views(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(16, 24, generator=g).to(dtype)
    cube = torch.randn(4, 5, 6, generator=g).to(dtype)
    sd = {
        "w": base,
        "tied": base,                       # same storage, same view
        "row": base[3],                     # storage_offset
        "t": base.t(),                      # transposed
        "slice": base[2:9, 5:20],           # offset + non-unit outer stride
        "step": base[::2, 1::3],            # strides in both dims
        "perm": cube.permute(2, 0, 1),
        "diag_window": cube[1:3, :, 2],     # 2-d view of a 3-d storage
        "expand": torch.ones(1, 7, dtype=dtype).expand(5, 7),  # stride 0
        "scalar": torch.tensor(2.5, dtype=dtype),
        "empty": torch.zeros(0, 3, dtype=dtype),
        "specials": special_values(dtype),
        "x_r": torch.randn(1, 1, 24, generator=g).to(dtype),
    }
    check_roundtrip(tmp_path, sd)


def test_shared_storage_mixed_dtypes(tmp_path):
    a = torch.randn(64, 32)
    h = torch.randn(10, 10).half()
    b = torch.randn(33, 7).bfloat16()
    sd = {"a": a, "a.t": a.t(), "a.half": a[10:20], "h": h, "h.col": h[:, 3], "b": b, "b.t": b.t()[1:]}
    check_roundtrip(tmp_path, sd)


def test_big_and_small_tensors(tmp_path):
    g = torch.Generator().manual_seed(1)
    big = torch.randn(1536, 1024, generator=g)
    sd = {
        "big.f32": big,                                   # 6 MiB
        "big.bf16.t": big.bfloat16().t(),                 # 3 MiB, non-contiguous
        "big.f16.slice": big.half()[100:1100, 3:1000:2],  # strided
        "tiny": torch.tensor([1.0]),
    }
    check_roundtrip(tmp_path, sd)


def test_module_state_dict_and_parameters(tmp_path):
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4, bias=False))
    check_roundtrip(tmp_path, dict(m.state_dict()))
    # torch.save(state_dict()) itself: an OrderedDict with _metadata.
    f = tmp_path / "sd.pth"
    torch.save(m.half().state_dict(), f)
    r = run_inspect(f)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_tensors"] == 5
    # Parameters (not detached) in a plain dict.
    check_roundtrip(tmp_path, {"p": torch.nn.Parameter(torch.randn(3, 3)), "q": torch.randn(2)})


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_pickle_protocols(tmp_path, protocol):
    x = torch.randn(5, 6).bfloat16()
    check_roundtrip(tmp_path, {"x": x, "xt": x.t(), "y": torch.randn(3)}, pickle_protocol=protocol)


def test_saved_without_crc(tmp_path):
    """torch.utils.serialization.config.save.compute_crc32 = False writes CRC 0 everywhere."""
    try:
        import torch.utils.serialization.config as cfg
    except ImportError:
        pytest.skip("this torch has no serialization config")
    old = cfg.save.compute_crc32
    cfg.save.compute_crc32 = False
    try:
        check_roundtrip(tmp_path, {"x": torch.randn(7, 3).t(), "h": torch.randn(4).half()})
    finally:
        cfg.save.compute_crc32 = old


def test_rwkv_style_keys(tmp_path):
    C, H = 64, 1
    sd = {}
    for i in range(2):
        p = f"rwkv.blocks.{i}."
        sd[p + "att.receptance.weight"] = torch.randn(C, C).bfloat16()
        sd[p + "att.r_k"] = torch.randn(H, C // H).bfloat16()
        sd[p + "att.x_r"] = torch.randn(1, 1, C).bfloat16()
    sd["moba.0.att.key.weight"] = torch.randn(C, C).half()
    sd["rwkv.emb.weight"] = torch.randn(100, C)
    check_roundtrip(tmp_path, sd)


def test_errors_name_file_and_problem(tmp_path):
    f = tmp_path / "ints.pth"
    torch.save({"ok": torch.ones(2), "ids": torch.arange(4)}, f)
    r = run_inspect(f)
    assert r.returncode != 0
    assert "ids" in r.stderr and "LongStorage" in r.stderr and str(f) in r.stderr

    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(100, 100)}, good)
    data = good.read_bytes()
    for n in (0, 10, len(data) // 2, len(data) - 1):
        cut = tmp_path / f"cut{n}.pth"
        cut.write_bytes(data[:n])
        r = run_inspect(cut)
        assert r.returncode != 0 and str(cut) in r.stderr, (n, r.stderr)

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not a checkpoint")
    r = run_inspect(junk)
    assert r.returncode != 0 and "not a PyTorch .pth or .safetensors file" in r.stderr

    r = run_inspect(tmp_path / "missing.pth")
    assert r.returncode != 0 and "missing.pth" in r.stderr and "NOT_FOUND" in r.stderr


def test_values_file_reads_back(tmp_path):
    """The --values output is itself a valid safetensors file for the reader."""
    sd = {"a": torch.randn(4, 4).half().t(), "b": torch.randn(3)}
    f = tmp_path / "x.pth"
    torch.save(sd, f)
    v1, v2 = tmp_path / "v1.safetensors", tmp_path / "v2.safetensors"
    assert run_inspect(f, v1).returncode == 0
    r = run_inspect(v1, v2)
    assert r.returncode == 0, r.stderr
    assert v1.read_bytes() == v2.read_bytes()


@pytest.mark.skipif(os.environ.get("RWKVX_BIG_TESTS") != "1", reason="set RWKVX_BIG_TESTS=1 (writes ~4.3 GB)")
def test_zip64_checkpoint(tmp_path):
    big = torch.zeros(1_100_000_000, dtype=torch.float32)  # 4.4 GB storage -> zip64 entries
    big[::9999991] = torch.arange(len(big[::9999991]), dtype=torch.float32)
    sd = {"big": big, "small.t": torch.randn(3, 5).t()}
    f = tmp_path / "big.pth"
    torch.save(sd, f)
    vals = tmp_path / "v.safetensors"
    r = run_inspect(f, vals)
    assert r.returncode == 0, r.stderr
    f.unlink()
    # Compare through a memory map, chunk by chunk (the file is as big as the tensor).
    with open(vals, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    mm = np.memmap(vals, dtype=np.uint8, mode="r", offset=8 + n)
    b, e = header["big"]["data_offsets"]
    want = big.numpy().view(np.uint8)
    assert e - b == want.size
    step = 1 << 28
    for i in range(0, want.size, step):
        assert np.array_equal(mm[b + i:b + min(i + step, want.size)], want[i:i + step]), i
    b, e = header["small.t"]["data_offsets"]
    assert bytes(mm[b:e]) == raw_bytes(sd["small.t"])
