"""The official rwkv-x package as an oracle.

Two jobs, both as a CLI (each run is its own process, since the two package generations
share the module name `rwkv_x`):

  oracle.py make  --out M.pth --shape JSON [--dtype fp32|fp16|bf16] [--plain] [--seed N]
      writes a random checkpoint in the official .pth layout (`rwkv.` + `moba.{j}.` keys,
      or the plain RWKV-7 layout with --plain).
  oracle.py run   --gen 0.1|0.2 --model M.pth --script S.json --out L.f32 --config JSON
      runs the package (strategy "cpu fp32") on the script and writes the last-position
      logits of every call (float32, concatenated), exactly like `rwkvx replay`.

The package folder for each generation comes from RWKVX_ORACLE_01 / RWKVX_ORACLE_02, by
default <repo>/.venv/oracle/0.1 and 0.2 (scripts/setup.sh installs rwkv-x 0.1.3 and 0.2.4
there; docs/MODEL.md says why those versions).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def oracle_dir(gen):
    env = {"0.1": "RWKVX_ORACLE_01", "0.2": "RWKVX_ORACLE_02"}[gen]
    return os.environ.get(env, os.path.join(REPO, ".venv", "oracle", gen))


def make_state_dict(shape, seed, plain=False):
    import torch
    g = torch.Generator().manual_seed(seed)
    C, V, R, M = shape["n_embd"], shape["vocab"], shape["n_rwkv_layer"], shape.get("n_attn_layer", 0)
    N = 64
    H = C // N
    F = shape.get("ffn_dim", 4 * C)
    Dw, Da, Dv, Dg = shape.get("rank_w", 16), shape.get("rank_a", 16), shape.get("rank_v", 8), shape.get("rank_g", 32)

    def u(*s, scale=1.0, off=0.0):
        return (torch.rand(*s, generator=g) * 2 - 1) * scale + off

    def unit(*s):
        return torch.rand(*s, generator=g)

    lin = (3.0 / C) ** 0.5
    lin_f = (3.0 / F) ** 0.5
    sd = {}
    p = "" if plain else "rwkv."
    sd[p + "emb.weight"] = u(V, C)
    for i in range(R):
        b = f"{p}blocks.{i}."
        if i == 0:
            sd[b + "ln0.weight"] = u(C, scale=0.1, off=1.0)
            sd[b + "ln0.bias"] = u(C, scale=0.1)
        for n in ("ln1", "ln2"):
            sd[b + n + ".weight"] = u(C, scale=0.1, off=1.0)
            sd[b + n + ".bias"] = u(C, scale=0.1)
        a = b + "att."
        for n in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):
            sd[a + n] = unit(1, 1, C)
        sd[a + "w0"] = u(1, 1, C, off=-1.0)
        sd[a + "w1"] = u(C, Dw, scale=lin)
        sd[a + "w2"] = u(Dw, C, scale=0.1)
        sd[a + "a0"] = u(1, 1, C, scale=0.5)
        sd[a + "a1"] = u(C, Da, scale=lin)
        sd[a + "a2"] = u(Da, C, scale=0.1)
        if i > 0:
            sd[a + "v0"] = u(1, 1, C, scale=0.5)
            sd[a + "v1"] = u(C, Dv, scale=lin)
            sd[a + "v2"] = u(Dv, C, scale=0.1)
        sd[a + "g1"] = u(C, Dg, scale=lin)
        sd[a + "g2"] = u(Dg, C, scale=0.1)
        sd[a + "k_k"] = u(1, 1, C, scale=0.2, off=0.85)
        sd[a + "k_a"] = u(1, 1, C, scale=0.2, off=1.0)
        sd[a + "r_k"] = u(H, N, scale=0.1)
        for n in ("receptance", "key", "value", "output"):
            sd[a + n + ".weight"] = u(C, C, scale=lin)
        sd[a + "ln_x.weight"] = u(C, scale=0.1, off=1.0)
        sd[a + "ln_x.bias"] = u(C, scale=0.1)
        sd[b + "ffn.x_k"] = unit(1, 1, C)
        sd[b + "ffn.key.weight"] = u(F, C, scale=lin)
        sd[b + "ffn.value.weight"] = u(C, F, scale=lin_f)
    sd[p + "ln_out.weight"] = u(C, scale=0.1, off=1.0)
    sd[p + "ln_out.bias"] = u(C, scale=0.1)
    sd[p + "head.weight"] = u(V, C, scale=lin)
    for j in range(M):
        b = f"moba.{j}."
        for n in ("ln1", "ln2"):
            sd[b + n + ".weight"] = u(C, scale=0.1, off=1.0)
            sd[b + n + ".bias"] = u(C, scale=0.1)
        for n in ("receptance", "key", "value", "output"):
            sd[b + "att." + n + ".weight"] = u(C, C, scale=lin)
        sd[b + "ffn.x_k"] = unit(1, 1, C)
        sd[b + "ffn.key.weight"] = u(F, C, scale=lin)
        sd[b + "ffn.value.weight"] = u(C, F, scale=lin_f)
    return sd


def cmd_make(args):
    import torch
    shape = json.loads(args.shape)
    sd = make_state_dict(shape, args.seed, plain=args.plain)
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    sd = {k: v.to(dt) for k, v in sd.items()}
    torch.save(sd, args.out)


def load_package(gen):
    sys.path.insert(0, oracle_dir(gen))
    os.environ["RWKV_CUDA_ON"] = "0"
    import rwkv_x.model as pkg
    return pkg


def build_model(gen, path, cfg):
    """The package's model with our config dict (keys as in docs/MODEL.md)."""
    import torch
    pkg = load_package(gen)
    if gen == "0.1":
        # 0.1.x: plain RWKV-7 needs the rwkv. prefix in the package; write a prefixed copy.
        sd = torch.load(path, weights_only=True)
        if not any(k.startswith("rwkv.") for k in sd):
            path = path + ".prefixed.pth"
            torch.save({"rwkv." + k: v for k, v in sd.items()}, path)
        conf = pkg.RWKV_X_Config(
            moba_chunk_size=cfg.get("chunk_size", 2048), moba_topk=cfg.get("topk", 3),
            max_kv_cache_size=cfg.get("max_kv_cache_size", 0), attn_mode=cfg.get("decode_attn_mode", "sparse"))
        model = pkg.RWKV_X(path, "cpu fp32", config=conf)
        # The constructor ignores these two: set them on the modules.
        for blk in model.moba:
            blk.att.kv_cache_window_size = cfg.get("kv_cache_window_size", 2000)
            blk.att.min_kv_cache_size = cfg.get("min_kv_cache_size", 16000)
        return model
    sd = torch.load(path, weights_only=True)
    if not any(k.startswith("rwkv.") for k in sd):
        path = path + ".prefixed.pth"
        torch.save({"rwkv." + k: v for k, v in sd.items()}, path)
    mx = cfg.get("max_kv_cache_size", 0)
    conf = pkg.RWKV_X_Config(
        attn_chunk_size=cfg.get("chunk_size", 2000), attn_topk=cfg.get("topk", 3),
        short_sequence_criteria=cfg.get("full_attn_threshold", 8000),
        enable_kv_cache_management=mx > 0, max_kv_cache_size=mx,
        kv_cache_window_size=cfg.get("kv_cache_window_size", 2000),
        min_kv_cache_size=cfg.get("min_kv_cache_size", 16000),
        prefill_attn_mode=cfg.get("prefill_attn_mode", "chunk"),
        decoding_attn_mode=cfg.get("decode_attn_mode", "full"))
    return pkg.RWKV_X(path, "cpu fp32", config=conf)


def make_time_state(shape, seed):
    """A random state-tuning file's tensors (RWKV-PEFT layout): blocks.{i}.att.time_state
    [H, N, N] for every RWKV block, values of the size trained states have."""
    import torch
    g = torch.Generator().manual_seed(seed)
    n = shape.get("head_size", 64)
    h = shape["n_embd"] // n
    return {f"blocks.{i}.att.time_state": torch.randn(h, n, n, generator=g) * 0.5
            for i in range(shape["n_rwkv_layer"])}


def initial_state(gen, model, path):
    """The package's state for a session that starts from the time_state file at `path`:
    zeros everywhere but each RWKV block's wkv state."""
    import torch
    ts = torch.load(path, weights_only=True)
    conf = model.config
    c = conf.n_embd
    rwkv = []
    for i in range(conf.n_rwkv_layer):
        key = f"blocks.{i}.att.time_state"
        rwkv += [torch.zeros(c), ts.get(key, ts.get("rwkv." + key)).float().clone(), torch.zeros(c)]
    n_side = conf.n_attn_layer if gen == "0.2" else conf.n_moba_layer
    side = [{"k_cache": torch.zeros((1, 0, c)), "v_cache": torch.zeros((1, 0, c)),
             "ffn_x_prev": torch.zeros(c)} for _ in range(n_side)]
    return {"rwkv": rwkv, "attn" if gen == "0.2" else "moba": side}


def cmd_make_state(args):
    import torch
    sd = make_time_state(json.loads(args.shape), args.seed)
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    torch.save({k: v.to(dt) for k, v in sd.items()}, args.out)


def cmd_run(args):
    import numpy as np
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = json.loads(args.config)
    model = build_model(args.gen, args.model, cfg)
    script = json.load(open(args.script))
    state = initial_state(args.gen, model, args.initial_state) if args.initial_state else None
    outs = []
    for call in script["calls"]:
        toks = call["tokens"]
        if call["kind"] == "one":
            out, state = model.forward(toks[0], state)
        else:
            out, state = model.forward(list(toks), state)
        outs.append(out.float().numpy().astype("<f4"))
    np.concatenate(outs).tofile(args.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--shape", required=True)
    m.add_argument("--dtype", default="fp32")
    m.add_argument("--plain", action="store_true")
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--gen", choices=["0.1", "0.2"], required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--script", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--config", default="{}")
    r.add_argument("--initial-state", default="", help="a time_state file (make-state)")
    ms = sub.add_parser("make-state")
    ms.add_argument("--out", required=True)
    ms.add_argument("--shape", required=True)
    ms.add_argument("--dtype", default="fp32")
    ms.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    {"make": cmd_make, "run": cmd_run, "make-state": cmd_make_state}[args.cmd](args)


if __name__ == "__main__":
    main()
