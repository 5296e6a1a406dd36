"""The RWKV-7 ("x070") wkv recurrence: the sequential reference and a chunked
(parallel-in-time) form with the same result, in plain PyTorch (runs on CPU and GPU).

Per head, S is an N x N matrix (row = value index i, column = key index j); per token
(docs: ../shared/docs/rwkv-x-model.md, step 6):
    sa   = S @ alpha                       (alpha = -kk)
    S    = S * w[None, :] + sa beta^T + v k^T   (beta = kk * a)
    y    = S @ r
All inputs are [B, T, H, N]; w is the per-step decay in (0, 1). Computed in float32.

Chunked form (chunk length L, state S0 at the chunk start, G_t = prod_{s<=t} w_s):
    u_t = S_{t-1} alpha_t  (the unknown "sa" of step t)
    S_t = S0 G_t + sum_{s<=t} (u_s beta_s^T + v_s k_s^T) G_t / G_s
so with a~_t = alpha_t G_{t-1}, b~_s = beta_s / G_s, k~_s = k_s / G_s, r^_t = r_t G_t:
    U = (I - tril_<(a~ b~^T))^{-1} (a~ S0^T + tril_<(a~ k~^T) V)
    Y = r^ S0^T + tril_<=(r^ b~^T) U + tril_<=(r^ k~^T) V
    S_L = S0 M + R,  M = diag(G_L) + W1^T (b~ G_L),  R = U0^T (b~ G_L) + V^T (k~ G_L)
where U = W1 S0^T + U0. Only S0 -> S_L is sequential (one small matmul per chunk).
The decay per step is >= exp(-0.606531), so with L = 64 the ratios G_t / G_s stay within
float32 range (<= 1e17).
"""
import torch


def wkv7_sequential(r, w, k, v, alpha, beta, state=None):
    """Reference: token by token. Returns (y [B,T,H,N], final state [B,H,N,N])."""
    B, T, H, N = r.shape
    f = lambda t: t.float()
    r, w, k, v, alpha, beta = map(f, (r, w, k, v, alpha, beta))
    S = torch.zeros(B, H, N, N, dtype=torch.float32, device=r.device) if state is None else state.float()
    ys = []
    for t in range(T):
        sa = torch.einsum("bhij,bhj->bhi", S, alpha[:, t])
        S = S * w[:, t, :, None, :] + sa[..., :, None] * beta[:, t, :, None, :] + v[:, t, :, :, None] * k[:, t, :, None, :]
        ys.append(torch.einsum("bhij,bhj->bhi", S, r[:, t]))
    return torch.stack(ys, dim=1), S


def wkv7_chunked(r, w, k, v, alpha, beta, state=None, chunk=64):
    """Chunked form; same contract as wkv7_sequential. T is padded up to a multiple of
    `chunk` internally (padding steps have w = 1 and zero inputs, so they change nothing)."""
    B, T, H, N = r.shape
    L = chunk
    pad = (-T) % L
    r, w, k, v, alpha, beta = (t.float() for t in (r, w, k, v, alpha, beta))
    if pad:
        z = lambda t, val=0.0: torch.cat([t, torch.full((B, pad, H, N), val, dtype=t.dtype, device=t.device)], 1)
        r, k, v, alpha, beta = z(r), z(k), z(v), z(alpha), z(beta)
        w = z(w, 1.0)
    Tp = T + pad
    nc = Tp // L
    # [B, H, nc, L, N]
    rs = lambda t: t.view(B, nc, L, H, N).permute(0, 3, 1, 2, 4)
    r, w, k, v, alpha, beta = map(rs, (r, w, k, v, alpha, beta))
    logw = torch.log(w)
    cum = torch.cumsum(logw, dim=3)           # log G_t (inclusive)
    cum_ex = cum - logw                       # log G_{t-1}
    a_t = alpha * torch.exp(cum_ex)
    r_h = r * torch.exp(cum)
    inv = torch.exp(-cum)
    b_t = beta * inv
    k_t = k * inv
    gl = torch.exp(cum[:, :, :, -1:, :])      # G_L  [B,H,nc,1,N]
    idx = torch.arange(L, device=r.device)
    strict = (idx[:, None] > idx[None, :]).to(r.dtype)
    incl = (idx[:, None] >= idx[None, :]).to(r.dtype)
    A_ab = (a_t @ b_t.transpose(-1, -2)) * strict
    A_ak = (a_t @ k_t.transpose(-1, -2)) * strict
    A_rb = (r_h @ b_t.transpose(-1, -2)) * incl
    A_rk = (r_h @ k_t.transpose(-1, -2)) * incl
    eye = torch.eye(L, dtype=r.dtype, device=r.device)
    rhs = torch.cat([a_t, A_ak @ v], dim=-1)  # [.., L, 2N]
    sol = torch.linalg.solve_triangular(eye - A_ab, rhs, upper=False, unitriangular=True)
    W1, U0 = sol[..., :N], sol[..., N:]
    bg = b_t * gl
    kg = k_t * gl
    M = torch.diag_embed(gl.squeeze(-2)) + W1.transpose(-1, -2) @ bg      # [B,H,nc,N,N]
    Rr = U0.transpose(-1, -2) @ bg + v.transpose(-1, -2) @ kg             # [B,H,nc,N,N]
    S = torch.zeros(B, H, N, N, dtype=r.dtype, device=r.device) if state is None else state.float()
    starts = []
    for c in range(nc):
        starts.append(S)
        S = torch.baddbmm(Rr[:, :, c].reshape(B * H, N, N), S.reshape(B * H, N, N),
                          M[:, :, c].reshape(B * H, N, N)).view(B, H, N, N)
    S0 = torch.stack(starts, dim=2)                                       # [B,H,nc,N,N]
    S0t = S0.transpose(-1, -2)
    U = W1 @ S0t + U0
    Y = r_h @ S0t + A_rb @ U + A_rk @ v                                   # [B,H,nc,L,N]
    Y = Y.permute(0, 2, 3, 1, 4).reshape(B, Tp, H, N)[:, :T]
    return Y, S
