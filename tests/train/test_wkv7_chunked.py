"""The chunked wkv7 form used for training equals the token-by-token recurrence."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "train"))
from wkv7 import wkv7_chunked, wkv7_sequential  # noqa: E402


def inputs(B, T, H, N, seed, strong_decay=False):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).float()
    r, k, v = rnd(B, T, H, N), rnd(B, T, H, N), rnd(B, T, H, N)
    kk = torch.nn.functional.normalize(rnd(B, T, H, N), dim=-1)
    a = torch.sigmoid(rnd(B, T, H, N))
    logit = rnd(B, T, H, N) * 3 + (4.0 if strong_decay else 0.0)
    w = torch.exp(-0.606531 * torch.sigmoid(logit))
    return r, w, k, v, -kk, kk * a


@pytest.mark.parametrize("T,chunk,strong", [(1, 16, False), (37, 16, False), (128, 64, False), (200, 64, True), (130, 32, True)])
def test_chunked_matches_sequential(T, chunk, strong):
    args = inputs(2, T, 2, 64, seed=T + chunk, strong_decay=strong)
    s0 = torch.randn(2, 2, 64, 64, generator=torch.Generator().manual_seed(7)) * 0.1
    y_ref, s_ref = wkv7_sequential(*args, state=s0)
    y, s = wkv7_chunked(*args, state=s0, chunk=chunk)
    scale = y_ref.abs().max()
    assert (y - y_ref).abs().max() <= 1e-4 * scale
    assert (s - s_ref).abs().max() <= 1e-4 * s_ref.abs().max()


def test_chunked_gradients_match():
    args = [t.double().requires_grad_(True) for t in inputs(1, 70, 1, 64, seed=3)]
    y_ref, s_ref = wkv7_sequential(*[t.float() for t in args])
    g_ref = torch.autograd.grad((y_ref.sum() + s_ref.sum()), args)
    y, s = wkv7_chunked(*[t.float() for t in args], chunk=32)
    g = torch.autograd.grad((y.sum() + s.sum()), args)
    for a, b in zip(g, g_ref):
        assert (a - b).abs().max() <= 1e-3 * (b.abs().max() + 1e-6)


def test_a_wrong_decay_is_detected():
    # The comparison can fail: perturbing one decay value changes the outputs.
    r, w, k, v, al, be = inputs(1, 50, 1, 64, seed=5)
    y_ref, _ = wkv7_sequential(r, w, k, v, al, be)
    w2 = w.clone()
    w2[0, 10, 0, 3] *= 0.5
    y, _ = wkv7_chunked(r, w2, k, v, al, be, chunk=16)
    assert (y - y_ref).abs().max() > 1e-3 * y_ref.abs().max()
