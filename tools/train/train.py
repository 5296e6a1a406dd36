"""Trains the small byte-level RWKV-X demo model (docs: server/embedded/MODEL_CARD.md).

  python3 tools/train/train.py --out DIR --minutes 8 [--data-dir .train/data]
      [--demo-chat ../shared/data/demo-chat.jsonl] [--resume M.pth] [--tiny]

Writes DIR/model.pth (official layout, fp16), DIR/model.pth.json (the engine's sparse
attention config), DIR/train_log.jsonl, every --save-every seconds and at the end.
Schedule (by elapsed fraction of --minutes): English text batches and passkey batches;
passkey lengths grow to --max-len; the answer queries attend like the engine's decode
("full" first, then the engine's top-k chunk selection).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import TextCorpus, make_batch  # noqa: E402
from export import export, load_pth  # noqa: E402
from model import RwkvX  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--data-dir", default=".train/data")
    ap.add_argument("--demo-chat", default="../shared/data/demo-chat.jsonl")
    ap.add_argument("--resume", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lr-min", type=float, default=2e-4)
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--max-len", type=int, default=16384)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--threshold", type=int, default=512)
    ap.add_argument("--topk-from", type=float, default=0.4, help="fraction of time after which answers use top-k")
    ap.add_argument("--save-every", type=float, default=90.0)
    ap.add_argument("--text-share", type=float, default=0.25, help="share of English-text batches")
    ap.add_argument("--sel-weight", type=float, default=0.2, help="weight of the chunk-selection loss")
    ap.add_argument("--start-level", type=int, default=0, help="curriculum level to start at (resume)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: short sequences, small batches")
    a = ap.parse_args()

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    corpus = TextCorpus(a.data_dir, a.demo_chat)
    model = RwkvX().to(dev)
    if a.resume:
        model.load_state_dict({k: v.float() for k, v in load_pth(a.resume).items()})
    nparam = sum(p.numel() for p in model.parameters())
    print(f"params {nparam} device {dev}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), eps=1e-8)
    sp = dict(chunk=a.chunk, topk=a.topk, threshold=a.threshold)
    # Passkey lengths: a curriculum that moves to the next length once the answers at the
    # current longest one are right (EMA of whole-key accuracy > 0.7), never past --max-len.
    lens = [n for n in (512, 1024, 2048, 4096, 8192, 16384, 32768) if n <= a.max_len]
    if a.tiny:
        lens = [256, 512]
        a.tokens_per_step = 1024
    level = min(a.start_level, len(lens) - 1)
    level_acc = 0.0
    level_steps = 0
    budget = a.minutes * 60.0
    t0 = time.time()
    last_save = t0
    log = open(os.path.join(a.out, "train_log.jsonl"), "a")
    step = 0
    ema = {}

    def save(tag):
        export(model, os.path.join(a.out, "model.pth"), sp)
        print(f"saved ({tag}) at {time.time() - t0:.0f}s", flush=True)

    while True:
        f = (time.time() - t0) / budget
        if f >= 1.0:
            break
        warm = min(1.0, (step + 1) / 50)
        lr = a.lr_min + (a.lr - a.lr_min) * 0.5 * (1 + math.cos(math.pi * min(1.0, f)))
        for g in opt.param_groups:
            g["lr"] = lr * warm
        avail = lens[:level + 1]
        if rng.random() < a.text_share:
            kind, n = "text", (1024 if not a.tiny else 256)
        else:
            kind = "passkey"
            n = avail[-1] if rng.random() < 0.5 else rng.choice(avail)
        b = max(1, a.tokens_per_step // n)
        ids, ans, keypos = make_batch(rng, corpus, kind, n, b)
        ids = torch.from_numpy(ids).to(dev)
        x, y = ids[:, :-1], ids[:, 1:]
        if kind == "text":
            mode, ans_t, ans_mode = ("dense" if rng.random() < 0.5 else "local"), None, "full"
        else:
            mode = "local" if rng.random() < 0.85 else "dense"
            ans_t = torch.from_numpy(ans).to(dev)
            use_topk = f >= a.topk_from or n >= 4096
            ans_mode = "topk" if (use_topk and rng.random() < 0.7) else "full"
        sp["keypos"] = torch.from_numpy(keypos).to(dev) if keypos is not None else None
        for blk in model.moba:
            blk.aux = None
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = model(x, mode=mode, ans=ans_t, ans_mode=ans_mode, sp=sp)
        logits = logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total = loss
        rec = {"step": step, "t": round(time.time() - t0, 1), "kind": kind, "n": n, "b": b, "mode": mode,
               "lr": lr * warm, "loss": loss.item()}
        if ans_t is not None:
            bi = torch.arange(b, device=dev)[:, None]
            la, ya = logits[bi, ans_t], y[bi, ans_t]
            aloss = F.cross_entropy(la.reshape(-1, la.shape[-1]), ya.reshape(-1))
            total = total + aloss
            key_acc = (la.argmax(-1) == ya).all(-1).float().mean().item()
            rec.update(ans_mode=ans_mode, ans_loss=aloss.item(), key_acc=key_acc)
            for j, blk in enumerate(model.moba):
                if blk.aux is not None:
                    total = total + a.sel_weight * blk.aux[0]
                    rec[f"sel{j}"] = blk.aux[1].item()
            if n == lens[level]:
                level_steps += 1
                level_acc = 0.8 * level_acc + 0.2 * key_acc
                if level_acc > 0.7 and level_steps >= 10 and level + 1 < len(lens):
                    level, level_acc, level_steps = level + 1, 0.0, 0
                    print(f"curriculum: passkey length now up to {lens[level]}", flush=True)
            rec["level"] = lens[level]
        opt.zero_grad(set_to_none=True)
        total.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        rec["gnorm"] = gn.item()
        log.write(json.dumps(rec) + "\n")
        for k in ("loss", "ans_loss", "key_acc", "sel0", "sel1"):
            if k in rec:
                ema[k] = rec[k] if k not in ema else 0.9 * ema[k] + 0.1 * rec[k]
        if step % 20 == 0:
            log.flush()
            print(f"step {step} t {rec['t']}s f {f:.2f} L{lens[level]} {kind} n={n} b={b} {mode}/{rec.get('ans_mode', '-')} "
                  + " ".join(f"{k}={v:.3f}" for k, v in ema.items()), flush=True)
        step += 1
        if time.time() - last_save > a.save_every:
            save("periodic")
            last_save = time.time()
    save("final")
    log.close()


if __name__ == "__main__":
    main()
