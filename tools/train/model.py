"""RWKV-X for training: RWKV-7 blocks plus sparse-attention blocks, the math of
../shared/docs/rwkv-x-model.md, with parameter names that are exactly the official
checkpoint keys (`rwkv.` + `moba.{j}.`), so export is a state_dict in fp16.

Sparse blocks in training (one mode per batch, see SparseBlock.forward):
  dense : causal attention over the whole sequence (what the engine's prefill does
          while T + CT <= W, and full decode);
  local : causal attention within pieces of `chunk` tokens aligned at 0 (what the
          engine's prefill does past W, where the cache is ignored).
Positions listed in `ans` (the decode-path queries: the answer tokens) instead attend
either to every earlier position ("full") or to the engine's decode-time selection
("topk": complete chunks ranked by q . mean(chunk keys) over all C, the top K of them,
plus the trailing partial chunk and the token itself).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from wkv7 import wkv7_chunked

HEAD = 64


class RwkvAtt(nn.Module):
    def __init__(self, C, layer, n_layer, ranks):
        super().__init__()
        H = C // HEAD
        Dw, Da, Dv, Dg = ranks
        r01 = layer / max(1, n_layer - 1)
        r10 = 1.0 - layer / n_layer
        ddd = torch.arange(C, dtype=torch.float32) / C
        p = lambda e: nn.Parameter((1.0 - ddd.pow(e)).view(1, 1, C))
        self.x_r, self.x_w, self.x_k = p(0.2 * r10), p(0.9 * r10), p(0.7 * r10)
        self.x_v, self.x_a, self.x_g = p(0.7 * r10), p(0.9 * r10), p(0.2 * r10)
        n = torch.arange(C, dtype=torch.float32)
        decay = -7 + 5 * (n / (C - 1)).pow(0.85 + 1.0 * r01 ** 0.5)
        self.w0 = nn.Parameter((decay + 0.5).view(1, 1, C))
        ortho = lambda a, b, s: nn.Parameter(nn.init.orthogonal_(torch.empty(a, b), gain=s))
        self.w1 = nn.Parameter(torch.zeros(C, Dw))
        self.w2 = ortho(Dw, C, 0.1)
        self.a0 = nn.Parameter(torch.zeros(1, 1, C))
        self.a1 = nn.Parameter(torch.zeros(C, Da))
        self.a2 = ortho(Da, C, 0.1)
        self.has_v = layer > 0
        if self.has_v:
            self.v0 = nn.Parameter(torch.ones(1, 1, C))
            self.v1 = nn.Parameter(torch.zeros(C, Dv))
            self.v2 = ortho(Dv, C, 0.1)
        self.g1 = nn.Parameter(torch.zeros(C, Dg))
        self.g2 = ortho(Dg, C, 0.1)
        self.k_k = nn.Parameter(torch.full((1, 1, C), 0.85))
        self.k_a = nn.Parameter(torch.ones(1, 1, C))
        self.r_k = nn.Parameter(torch.full((H, HEAD), -0.04))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        s = 0.5 / math.sqrt(C)
        nn.init.uniform_(self.receptance.weight, -s, s)
        nn.init.uniform_(self.key.weight, -0.1 * s, 0.1 * s)
        nn.init.uniform_(self.value.weight, -s, s)
        nn.init.zeros_(self.output.weight)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)
        with torch.no_grad():
            self.ln_x.weight.fill_(((1 + layer) / n_layer) ** 0.7)

    def forward(self, x, v_first):
        B, T, C = x.shape
        H = C // HEAD
        xx = F.pad(x, (0, 0, 1, -1)) - x
        xr, xw, xk = x + xx * self.x_r, x + xx * self.x_w, x + xx * self.x_k
        xv, xa, xg = x + xx * self.x_v, x + xx * self.x_a, x + xx * self.x_g
        r = self.receptance(xr)
        w = torch.tanh(xw @ self.w1) @ self.w2
        k = self.key(xk)
        v = self.value(xv)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(B, T, H, HEAD), dim=-1, p=2.0).view(B, T, C)
        k = k * (1 + (a - 1) * self.k_a)
        if not self.has_v:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        w = torch.exp(-0.606531 * torch.sigmoid((self.w0 + w).float()))
        hv = lambda t: t.float().view(B, T, H, HEAD)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y, _ = wkv7_chunked(hv(r), hv(w), hv(k), hv(v), hv(-kk), hv(kk * a))
            y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        y = y + ((r * k * self.r_k.view(1, 1, C)).view(B, T, H, HEAD).sum(-1, keepdim=True)
                 * v.view(B, T, H, HEAD)).view(B, T, C)
        return self.output(y * g), v_first


class Ffn(nn.Module):
    def __init__(self, C, F_, layer, n_layer):
        super().__init__()
        r10 = 1.0 - layer / n_layer
        ddd = torch.arange(C, dtype=torch.float32) / C
        self.x_k = nn.Parameter((1.0 - ddd.pow(r10 ** 4)).view(1, 1, C))
        self.key = nn.Linear(C, F_, bias=False)
        self.value = nn.Linear(F_, C, bias=False)
        nn.init.orthogonal_(self.key.weight)
        nn.init.zeros_(self.value.weight)

    def forward(self, x):
        xx = F.pad(x, (0, 0, 1, -1)) - x
        k = torch.relu(self.key(x + xx * self.x_k)) ** 2
        return self.value(k)


class RwkvBlock(nn.Module):
    def __init__(self, C, F_, layer, n_layer, ranks):
        super().__init__()
        if layer == 0:
            self.ln0 = nn.LayerNorm(C)
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.att = RwkvAtt(C, layer, n_layer, ranks)
        self.ffn = Ffn(C, F_, layer, n_layer)

    def forward(self, x, v_first):
        dx, v_first = self.att(self.ln1(x), v_first)
        x = x + dx
        return x + self.ffn(self.ln2(x)), v_first


class SparseAtt(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        nn.init.zeros_(self.output.weight)


def decode_mask(q, k, pos, chunk, topk, threshold):
    """Boolean [B, A, T] mask of the rows the engine's decode step at each position in
    `pos` ([B, A] long) attends to: the cache is every earlier position (CT = pos)."""
    B, T, C = k.shape
    A = pos.shape[1]
    j = torch.arange(T, device=k.device)
    full = j[None, None, :] <= pos[:, :, None]
    nch = T // chunk
    if nch == 0:
        return full
    means = k[:, : nch * chunk].float().view(B, nch, chunk, C).mean(2)         # [B, nch, C]
    score = torch.einsum("bac,bnc->ban", q.float(), means)                    # [B, A, nch]
    complete = pos // chunk                                                    # chunks fully in the cache
    ci = torch.arange(nch, device=k.device)
    score = score.masked_fill(ci[None, None, :] >= complete[:, :, None], float("-inf"))
    kk = min(topk, nch)
    top = score.topk(kk, dim=-1).indices                                       # [B, A, kk]
    sel = torch.zeros(B, A, nch + 1, dtype=torch.bool, device=k.device)
    sel.scatter_(2, top, True)
    sel[:, :, nch] = False
    sel &= torch.cat([ci[None, None, :] < complete[:, :, None],
                      torch.zeros(B, A, 1, dtype=torch.bool, device=k.device)], 2)
    jc = torch.clamp(j // chunk, max=nch)
    in_sel = torch.gather(sel, 2, jc[None, None, :].expand(B, A, T))
    tail = (j[None, None, :] >= (complete * chunk)[:, :, None]) & full
    sparse = in_sel | tail
    use_full = (pos <= threshold)[:, :, None]
    return torch.where(use_full, full, sparse)


def selection_loss(q, k, pos, keypos, chunk):
    """Auxiliary loss that trains the engine's decode-time chunk selection directly: a
    softmax over the complete chunks' scores q . mean(chunk keys) (all C channels, as the
    engine ranks them), whose target is the chunk(s) holding the needed key digit.
    Returns (loss, share of rows whose best chunk is a target)."""
    B, T, C = k.shape
    nch = T // chunk
    if nch == 0:
        return None
    means = k[:, : nch * chunk].float().view(B, nch, chunk, C).mean(2)
    score = torch.einsum("bac,bnc->ban", q.float(), means)
    complete = pos // chunk
    ci = torch.arange(nch, device=k.device)
    score = score.masked_fill(ci[None, None, :] >= complete[:, :, None], float("-inf"))
    kc = keypos // chunk                                                       # [B, A, 2]
    valid = kc < complete[:, :, None]
    good = torch.zeros(B, pos.shape[1], nch + 1, dtype=torch.bool, device=k.device)
    good.scatter_(2, torch.where(valid, kc, torch.full_like(kc, nch)), True)
    good = good[:, :, :nch]
    rows = good.any(-1) & (complete >= 2)
    if not rows.any():
        return None
    lse_all = torch.logsumexp(score, -1)
    lse_good = torch.logsumexp(score.masked_fill(~good, float("-inf")), -1)
    loss = (lse_all - lse_good)[rows].mean()
    hit = torch.gather(good, 2, score.argmax(-1, keepdim=True)).squeeze(-1)[rows].float().mean()
    return loss, hit


class SparseBlock(nn.Module):
    def __init__(self, C, F_):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.att = SparseAtt(C)
        self.ffn = Ffn(C, F_, 1, 2)

    def attend(self, x, mode, ans, ans_mode, sp):
        B, T, C = x.shape
        H = C // HEAD
        q, k, v = self.att.receptance(x), self.att.key(x), self.att.value(x)
        heads = lambda t: t.view(B, -1, H, HEAD).transpose(1, 2)
        if mode == "dense":
            y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        else:
            L = sp["chunk"]
            Tp = -(-T // L) * L  # padded on the right; causal, so the pad changes nothing
            lh = lambda t: F.pad(t, (0, 0, 0, Tp - T)).reshape(B * (Tp // L), L, H, HEAD).transpose(1, 2)
            y = F.scaled_dot_product_attention(lh(q), lh(k), lh(v), is_causal=True)
            y = y.transpose(1, 2).reshape(B, Tp, C)[:, :T].reshape(B, T, H, HEAD).transpose(1, 2)
        y = y.transpose(1, 2).reshape(B, T, C)
        if ans is not None:
            bi = torch.arange(B, device=x.device)[:, None]
            qa = q[bi, ans]                                                     # [B, A, C]
            if ans_mode == "topk":
                m = decode_mask(qa, k, ans, sp["chunk"], sp["topk"], sp["threshold"])
            else:
                m = torch.arange(T, device=x.device)[None, None, :] <= ans[:, :, None]
            if sp is not None and sp.get("keypos") is not None:
                self.aux = selection_loss(qa, k, ans, sp["keypos"], sp["chunk"])
            ya = F.scaled_dot_product_attention(heads(qa), heads(k), heads(v), attn_mask=m[:, None])
            ya = ya.transpose(1, 2).reshape(B, -1, C)
            y = y.index_put((bi.expand_as(ans), ans), ya)
        return self.att.output(y)

    def forward(self, x, mode, ans, ans_mode, sp):
        x = x + self.attend(self.ln1(x), mode, ans, ans_mode, sp)
        return x + self.ffn(self.ln2(x))


class Rwkv(nn.Module):
    def __init__(self, V, C, F_, R, ranks):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
        self.blocks = nn.ModuleList([RwkvBlock(C, F_, i, R, ranks) for i in range(R)])
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        nn.init.orthogonal_(self.head.weight, gain=0.5)


class RwkvX(nn.Module):
    def __init__(self, V=257, C=256, R=4, M=2, ranks=(32, 32, 16, 32)):
        super().__init__()
        self.shape = dict(vocab=V, n_embd=C, n_rwkv_layer=R, n_attn_layer=M)
        self.rwkv = Rwkv(V, C, 4 * C, R, ranks)
        self.moba = nn.ModuleList([SparseBlock(C, 4 * C) for _ in range(M)])

    def order(self):
        R, M = len(self.rwkv.blocks), len(self.moba)
        if M == 0:
            return list(range(R))
        if M == 1:
            return list(range(R)) + [-1]
        iv = R // M
        out = []
        for j in range(M):
            out += list(range(j * iv, (j + 1) * iv)) + [-(j + 1)]
        return out

    def forward(self, idx, mode="dense", ans=None, ans_mode="full", sp=None):
        x = self.rwkv.blocks[0].ln0(self.rwkv.emb(idx))
        v_first = None
        for b in self.order():
            if b >= 0:
                x, v_first = self.rwkv.blocks[b](x, v_first)
            else:
                x = self.moba[-b - 1](x, mode, ans, ans_mode, sp)
        return self.rwkv.head(self.rwkv.ln_out(x))
