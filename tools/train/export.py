"""Export a trained RwkvX to the official .pth layout (fp16) plus the engine's JSON
sidecar (`<model>.pth.json`, keys as in docs/MODEL.md)."""
import json

import torch


def sidecar(sp):
    """The sparse-attention parameters chosen for this model (docs: MODEL_CARD.md)."""
    return {
        "chunk_size": sp["chunk"],
        "topk": sp["topk"],
        "full_attn_threshold": sp["threshold"],
        "prefill_attn_mode": "chunk",
        "decode_attn_mode": "sparse",
        "max_kv_cache_size": 20000,
        "kv_cache_window_size": 2000,
        "min_kv_cache_size": 16000,
    }


def export(model, path, sp):
    sd = {k: v.detach().to("cpu", torch.float16).contiguous().clone() for k, v in model.state_dict().items()}
    torch.save(sd, path + ".tmp")
    import os
    os.replace(path + ".tmp", path)
    with open(path + ".json", "w") as f:
        json.dump(sidecar(sp), f, indent=1)
        f.write("\n")


def load_pth(path):
    return torch.load(path, map_location="cpu", weights_only=True)
