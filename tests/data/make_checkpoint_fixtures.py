#!/usr/bin/env python3
"""Generates the tiny torch.save fixtures used by tests/unit/checkpoint_test.cc.

Run from anywhere with a Python that has torch (e.g. /tmp/venv/bin/python):
    python tests/data/make_checkpoint_fixtures.py
Writes, beside this script:
  ckpt_mixed.pth              fp32/fp16/bf16, shared storages, transposed/sliced views,
                              a scalar, an empty tensor, an nn.Parameter
  ckpt_mixed.expected.safetensors  the same tensors, dense, written by hand below
  ckpt_module.pth             nn.Module.state_dict() (OrderedDict with _metadata), bf16
  ckpt_module.expected.safetensors
  ckpt_proto4.pth             ckpt_mixed's dict saved with pickle_protocol=4
  ckpt_int64.pth              holds an int64 tensor (must be rejected as unsupported)
Outputs are deterministic for a given torch version (the zip serialization id aside).
"""
import json
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors):
    """A minimal independent safetensors writer (keys sorted, dense row-major)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def mixed():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(6, 8, generator=g)
    h = torch.randn(5, 7, generator=g).half()
    b = (torch.randn(4, 6, generator=g) * 100).bfloat16()
    big = torch.randn(3, 4, 5, generator=g)
    sd = {
        "rwkv.emb.weight": base,                       # fp32, contiguous
        "rwkv.head.weight": base,                      # the same tensor again (tied)
        "view.row": base[2],                           # offset view of a shared storage
        "view.transposed": base.t(),                   # non-contiguous strides
        "view.slice": base[1:5, 2:7],                  # offset + strides
        "view.step": base[:, ::3],                     # stride 3 in the last dim
        "half.weight": h,
        "half.t": h.t(),
        "bf16.weight": b,
        "bf16.slice": b[1:3, ::2],
        "f32.permuted": big.permute(2, 0, 1),
        "f32.scalar": torch.tensor(3.5),
        "f32.empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.arange(5, dtype=torch.float32)),
        "special.half": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 6e-8, 65504.0],
                                     dtype=torch.float16),
    }
    return sd


def main():
    sd = mixed()
    torch.save(sd, os.path.join(HERE, "ckpt_mixed.pth"))
    write_safetensors(os.path.join(HERE, "ckpt_mixed.expected.safetensors"), sd)
    torch.save(sd, os.path.join(HERE, "ckpt_proto4.pth"), pickle_protocol=4)

    torch.manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).bfloat16()
    msd = m.state_dict()
    torch.save(msd, os.path.join(HERE, "ckpt_module.pth"))
    write_safetensors(os.path.join(HERE, "ckpt_module.expected.safetensors"), dict(msd))

    torch.save({"ok": torch.ones(2), "ids": torch.arange(3)}, os.path.join(HERE, "ckpt_int64.pth"))
    for f in sorted(os.listdir(HERE)):
        print(f, os.path.getsize(os.path.join(HERE, f)))


if __name__ == "__main__":
    main()
