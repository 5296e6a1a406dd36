#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/ (needs torch; run with any venv
that has it, e.g. /tmp/venv/bin/python tests/fuzz/make_seeds.py). Seeds stay tiny so
mutations are cheap."""
import io
import json
import os
import shutil
import struct
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
PTH = os.path.join(HERE, "corpus", "fuzz_pth")
ST = os.path.join(HERE, "corpus", "fuzz_safetensors")


def save(obj, name, **kw):
    torch.save(obj, os.path.join(PTH, name), **kw)


def rezip_stored(src, dst, prefix):
    """Same entries, rewritten by Python's zipfile (no data descriptors, other folder)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            name = prefix + info.filename[info.filename.index("/"):]
            zout.writestr(name, zin.read(info.filename))


def safetensors(name, header, data):
    h = json.dumps(header).encode()
    with open(os.path.join(ST, name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    os.makedirs(PTH, exist_ok=True)
    os.makedirs(ST, exist_ok=True)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    save({"w": base}, "one_f32.pth")
    save({"t": base.t(), "s": base[1:, ::2], "w": base}, "views_f32.pth")
    save({"h": base.half().t(), "b": base.bfloat16()[2]}, "half_bf16.pth")
    save({"p": torch.nn.Parameter(base[0].clone())}, "param.pth")
    save({"w": base[1]}, "proto4.pth", pickle_protocol=4)
    save({"ids": torch.arange(3)}, "int64.pth")
    rezip_stored(os.path.join(PTH, "views_f32.pth"), os.path.join(PTH, "views_rezipped.pth"), "arch")
    shutil.copy(os.path.join(DATA, "ckpt_module.pth"), os.path.join(PTH, "module_bf16.pth"))

    f32 = struct.pack("<6f", *range(6))
    safetensors("f32.safetensors", {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32)
    safetensors("mixed.safetensors", {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
        "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [4, 8]},
        "c": {"dtype": "F32", "shape": [], "data_offsets": [8, 12]},
        "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [12, 12]},
    }, bytes(range(12)))
    safetensors("i64.safetensors", {"i": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8))
    shutil.copy(os.path.join(DATA, "ckpt_module.expected.safetensors"), os.path.join(ST, "module.safetensors"))
    for d in (PTH, ST):
        for f in sorted(os.listdir(d)):
            print(os.path.join(os.path.basename(d), f), os.path.getsize(os.path.join(d, f)))


if __name__ == "__main__":
    main()
