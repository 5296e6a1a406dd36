#!/usr/bin/env python3
"""The chunked wkv7's pass A as matrix products: the algebra and its float32 error.

kernels/wkv7_chunked.cu's pass A runs the token recurrence twice per chunk (64 dependent
steps each; 22% of a 0.2B 1K prefill, 20% of a 3.6B one: bench/engine/results/
h100_2026-12-06_s21/call5). The same outputs (P = X_L, D = D_L, Q_t = X_t r_t, y0_t) follow
from products of 64 x 64 matrices and one unit-triangular inverse, with no token-to-token
dependence, so a kernel can run them as tiled GEMMs (on CUDA cores in fp32, or tensor cores
in 3xTF32). Per head, one chunk of L tokens from state S0 (row i = value, column j = key):

  G_t = w_1 * ... * w_t (elementwise, G_0 = 1); a_t = -kk_t, b_t = kk_t * alpha_t
  ~a_s = G_{s-1} a_s,  ^b_s = b_s / G_s,  ^k_s = k_s / G_s,  ~r_t = G_t r_t
  Abb[q,s] = ^b_q . ~a_s (q < s), Akb[q,s] = ^k_q . ~a_s (q < s)
  Br[s,t] = ^b_s . ~r_t (s <= t),  Kr[s,t] = ^k_s . ~r_t (s <= t),  T = (I - Abb)^-1
  u_s = S_{s-1} a_s:  U = (S0 ~A + V Akb) T
  Y   = S0 Q + Y0,   Q  = ~R + ~A T Br,          Y0 = V (Akb T Br + Kr)
  S_L = S0 P + D,    P  = (I + ~A T ^B^T) G_L,   D  = V (Akb T ^B^T + ^K^T) G_L

Settings: random decays; every decay at its strongest (w = 0.545, "fast"); no decay
("slow", w -> 1); and "aligned": w -> 1 with the same kk every token and alpha = 1, where
(I - Abb) has entries near 1 above its diagonal and its inverse's substitution cancels.
T = (I - Abb)^-1 is taken as a kernel would: 16 x 16 diagonal blocks by substitution (16
dependent steps), the rest by halving with products (unit_upper_inverse).

The decay is w = exp(-exp(-0.5) sigmoid(.)) in (0.545, 1) (docs: shared/docs/rwkv-x-model.md),
so over 64 tokens G >= 0.545^64 ~ 1e-17 and 1/G <= ~1e17: inside float32's range (not fp16's).

This script checks the algebra and measures the float32 error of the matrix form against a
float64 sequential reference, beside the float32 sequential form's own error (what the
kernels compute today), over many chunks chained through the state, with the products in
float32, in 3xTF32 and in plain TF32 (tensor-core emulation; passes B and C stay float32).
Prints a table; exits non-zero if the float32 or 3xTF32 matrix form's error exceeds 4x the
sequential float32 form's at any setting. Run: .venv/bin/python <this file> (numpy).
"""
import sys

import numpy as np

N = 64


def inputs(rng, n_tok, w_mode):
    z = rng.normal(0, 2.0, (n_tok, N))
    if w_mode == "fast":  # every decay at its strongest: G_L smallest
        z = np.full((n_tok, N), 8.0)
    if w_mode in ("aligned", "slow"):  # no decay at all (w -> 1)
        z = np.full((n_tok, N), -8.0)
    w = np.exp(-np.exp(-0.5) / (1 + np.exp(-z)))
    k = rng.normal(0, 1, (n_tok, N))
    kk = rng.normal(0, 1, (n_tok, N))
    kk /= np.linalg.norm(kk, axis=1, keepdims=True)
    alpha = rng.uniform(0, 1, (n_tok, N))
    if w_mode == "aligned":  # the same kk every token, alpha = 1: Abb's entries near -1
        kk = np.tile(kk[:1], (n_tok, 1))
        alpha = np.ones((n_tok, N))
    r = rng.normal(0, 1, (n_tok, N))
    v = rng.normal(0, 1, (n_tok, N))
    return w, k, kk, alpha, r, v


def sequential(S, w, k, kk, alpha, r, v, dt):
    S = S.astype(dt).copy()
    ys = []
    for t in range(len(w)):
        a, b = (-kk[t]).astype(dt), (kk[t] * alpha[t]).astype(dt)
        sa = S @ a
        S = S * w[t].astype(dt)[None, :] + np.outer(sa, b) + np.outer(v[t].astype(dt), k[t].astype(dt))
        ys.append(S @ r[t].astype(dt))
    return S, np.array(ys)


def tf32(x):
    """float32 rounded to TF32 (10 mantissa bits, nearest even), as a tensor core reads it."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0xFFF + ((u >> 13) & 1)) & ~np.uint64(0x1FFF)
    return u.astype(np.uint32).view(np.float32)


def mm(a, b, tc):
    """a @ b in float32, or as tensor cores would: "tf32" (inputs rounded to TF32, float32
    sums) or "3xtf32" (each input split into a TF32 high part and a TF32 remainder; the
    three largest cross products summed)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if tc is None:
        return a @ b
    ah, bh = tf32(a), tf32(b)
    if tc == "tf32":
        return ah @ bh
    al, bl = tf32(a - ah), tf32(b - bh)
    return ah @ bh + (ah @ bl + al @ bh)


def unit_upper_inverse(M, mul, base=16):
    """The inverse of a unit upper-triangular M: blocks of `base` by substitution (base
    dependent steps), larger ones by halving, [[A, B], [0, C]]^-1 = [[A', -A' B C'], [0, C']]
    with the off-diagonal block as two products (what a kernel would run as MMA)."""
    n = len(M)
    if n <= base:
        T = np.eye(n, dtype=M.dtype)
        for c in range(n):  # column c: solve M x = e_c, rows from the bottom
            x = np.zeros(n, M.dtype)
            x[c] = 1
            for q in range(c - 1, -1, -1):
                x[q] = -(M[q, q + 1:c + 1] @ x[q + 1:c + 1])
            T[:, c] = x
        return T
    h = n // 2
    A, B, C = M[:h, :h], M[:h, h:], M[h:, h:]
    Ai, Ci = unit_upper_inverse(A, mul, base), unit_upper_inverse(C, mul, base)
    T = np.zeros_like(M)
    T[:h, :h], T[h:, h:] = Ai, Ci
    T[:h, h:] = -mul(mul(Ai, B), Ci)
    return T


def chunk_matrices(w, k, kk, alpha, r, v, dt, tc=None):
    """P, D, Q (L x N, row t = Q_t), Y0 (L x N) of one chunk, in dtype dt; the products as
    mm(.., tc) (float32 only)."""
    w, k, kk, alpha, r, v = (x.astype(dt) for x in (w, k, kk, alpha, r, v))
    if dt == np.float64:
        tc = None
    mul = (lambda x, y: x @ y) if dt == np.float64 else (lambda x, y: mm(x, y, tc))
    L = len(w)
    G = np.cumprod(w, axis=0)  # G[t] = w_1..w_{t+1} (0-indexed: G_t for token t)
    Gprev = np.vstack([np.ones((1, N), dt), G[:-1]])
    a, b = -kk, kk * alpha
    at = Gprev * a  # ~a_s, rows s
    bh, kh = b / G, k / G  # ^b_s, ^k_s
    rt = G * r  # ~r_t
    upper = np.triu(np.ones((L, L), bool), 1)
    upper_eq = np.triu(np.ones((L, L), bool), 0)
    Abb = np.where(upper, mul(bh, at.T), 0).astype(dt)  # [q, s]
    Akb = np.where(upper, mul(kh, at.T), 0).astype(dt)
    Br = np.where(upper_eq, mul(bh, rt.T), 0).astype(dt)  # [s, t]
    Kr = np.where(upper_eq, mul(kh, rt.T), 0).astype(dt)
    T = unit_upper_inverse(np.eye(L, dtype=dt) - Abb, mul)
    At = at.T  # ~A: N x L (columns ~a_s)
    ATt = mul(At, T)  # N x L
    Q = (rt.T + mul(ATt, Br)).T  # L x N: Q_t = ~r_t + (~A T Br)[:, t]
    M = mul(Akb, T)  # L x L
    Y0 = mul(v.T, mul(M, Br) + Kr).T  # L x N
    GL = G[-1]
    P = (np.eye(N, dtype=dt) + mul(ATt, bh)) * GL[None, :]
    D = mul(v.T, mul(M, bh) + kh) * GL[None, :]
    return P, D, Q, Y0


def chunked(S, w, k, kk, alpha, r, v, L, dt, tc=None):
    S = S.astype(dt).copy()
    ys = []
    for c0 in range(0, len(w), L):
        sl = slice(c0, c0 + L)
        P, D, Q, Y0 = chunk_matrices(w[sl], k[sl], kk[sl], alpha[sl], r[sl], v[sl], dt, tc)
        ys.append((S @ Q.T).T + Y0)
        S = S @ P + D
    return S, np.vstack(ys)


def main():
    rng = np.random.default_rng(1)
    worst = 0.0
    print("| w | tokens | L | seq fp32 rel err y / S | matrix fp32 y / S | matrix 3xTF32 y / S | matrix TF32 y / S | matrix fp64 y |")
    print("|---|---|---|---|---|---|---|---|")
    for w_mode in ("random", "fast", "slow", "aligned"):
        for n_tok, L in ((256, 64), (1024, 64), (1024, 32), (1024, 16)):
            w, k, kk, alpha, r, v = inputs(rng, n_tok, w_mode)
            S0 = rng.normal(0, 1, (N, N))
            S_ref, y_ref = sequential(S0, w, k, kk, alpha, r, v, np.float64)
            S_s32, y_s32 = sequential(S0, w, k, kk, alpha, r, v, np.float32)
            S_m32, y_m32 = chunked(S0, w, k, kk, alpha, r, v, L, np.float32)
            S_m64, y_m64 = chunked(S0, w, k, kk, alpha, r, v, L, np.float64)
            S_3x, y_3x = chunked(S0, w, k, kk, alpha, r, v, L, np.float32, "3xtf32")
            S_tf, y_tf = chunked(S0, w, k, kk, alpha, r, v, L, np.float32, "tf32")
            rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            e = [rel(y_s32, y_ref), rel(S_s32, S_ref), rel(y_m32, y_ref), rel(S_m32, S_ref), rel(y_m64, y_ref)]
            t3 = [rel(y_3x, y_ref), rel(S_3x, S_ref)]
            t1 = [rel(y_tf, y_ref), rel(S_tf, S_ref)]
            print(f"| {w_mode} | {n_tok} | {L} | {e[0]:.2e} / {e[1]:.2e} | {e[2]:.2e} / {e[3]:.2e} | "
                  f"{t3[0]:.2e} / {t3[1]:.2e} | {t1[0]:.2e} / {t1[1]:.2e} | {e[4]:.1e} |")
            worst = max(worst, e[2] / max(e[0], 1e-12), e[3] / max(e[1], 1e-12),
                        t3[0] / max(e[0], 1e-12), t3[1] / max(e[1], 1e-12))
            if e[4] > 1e-9:
                print("the matrix form's algebra disagrees with the recurrence")
                return 1
    print(f"\nworst (matrix fp32 or 3xTF32) / sequential fp32 error ratio: {worst:.2f} (plain TF32 is not held to it)")
    return 0 if worst <= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
