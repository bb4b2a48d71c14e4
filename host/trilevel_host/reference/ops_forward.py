"""Forward operations of the engine, bit-accurate, one function per op.

Every function takes int64 arrays holding 16-bit values plus their ``frac_bits`` (written
``f*``) and returns int64 arrays at the requested output format. Internal values are wide
(int64 here, ap_int in the C++); only what an op returns is rounded and saturated to 16 bits.
``stats``/``name`` record saturation counts (see :class:`trilevel_host.fixedpoint.SatStats`).
Shapes: B batch, N tokens, C channels, H heads, D head dim, K reduction length.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .. import luts

NORM_FRAC = 14  # LayerNorm's normalised value (x - mean) / std, internal, 14 fractional bits
LN_EXTRA_FRAC = 8  # LayerNorm works on x with 8 more fractional bits, so its mean is rounded finely
PROB_FRAC = 15  # softmax probabilities are stored at 15 fractional bits (1.0 saturates to 32767)
SCORE_FRAC = 27  # the vector unit's unrounded probabilities, which the TA-Selector ranks
EXP_IN_FRAC = luts.SPECS["exp"].in_frac


def rdiv(a, n: int) -> np.ndarray:
    """a / n for a positive integer constant n, rounded half up: floor((2a + n) / 2n)."""
    return np.floor_divide(2 * np.asarray(a, dtype=np.int64) + n, 2 * n)


def linear(x, fx: int, w, fw: int, b, fb: int | None, fy: int, stats=None, name=None) -> np.ndarray:
    """y = x @ w.T + b.  x (..., K) at fx, w (N, K) at fw, b (N,) at fb or None -> (..., N) at fy.

    The accumulator holds fx + fw fractional bits; the bias is shifted into it (rounded
    half up if it has more fractional bits than the accumulator).
    """
    fa = fx + fw
    acc = fp.matmul(x, np.asarray(w).T)
    if b is not None:
        acc = acc + fp.rshift_round(b, fb - fa)
    acc = fp.saturate_acc(acc, stats, name)
    return fp.requantize(acc, fa, fy, stats, name)


def add(a, fa: int, b, fb: int, fy: int, stats=None, name=None) -> np.ndarray:
    """Residual add: both operands aligned to the finer format, summed exactly, then rounded."""
    f = max(fa, fb)
    s = (np.asarray(a, dtype=np.int64) << (f - fa)) + (np.asarray(b, dtype=np.int64) << (f - fb))
    return fp.requantize(s, f, fy, stats, name)


def layernorm(x, fx: int, g, fg: int, b, fb: int, fy: int, eps: float, stats=None, name=None):
    """LayerNorm over the last axis. Returns (y at fy, cache (n, r, sh) for the backward).

    With fd = fx + LN_EXTRA_FRAC: mean = rdiv(sum x 2**8, C) at fd; d = x 2**8 - mean;
    var = rdiv(sum d^2, C) at 2 fd, plus eps_i = round(eps * 2**(2 fd)), at least 1;
    1/sqrt(var) = r * 2**-sh by the rsqrt table; n = d * r shifted to NORM_FRAC; y = n g + b.
    """
    x = np.asarray(x, dtype=np.int64) << LN_EXTRA_FRAC
    fd = fx + LN_EXTRA_FRAC
    C = x.shape[-1]
    mean = rdiv(x.sum(-1, keepdims=True), C)
    d = x - mean  # (..., C) at fd, |d| < 2**25
    var = rdiv((d * d).sum(-1, keepdims=True), C)  # (..., 1) at 2 fd, < 2**50
    eps_i = max(1, int(np.floor(eps * 2.0 ** (2 * fd) + 0.5)))
    r, sh = luts.rsqrt(var + eps_i)  # 1/sqrt(var_int) = r * 2**-sh
    # d * 2**-fd * r * 2**-sh * 2**fd = d * r * 2**-sh  ->  at NORM_FRAC
    n = fp.rshift_round(d * r, sh - NORM_FRAC)
    acc = n * np.asarray(g, dtype=np.int64) + fp.rshift_round(b, fb - (NORM_FRAC + fg))
    y = fp.requantize(acc, NORM_FRAC + fg, fy, stats, name)
    return y, (n, r, sh)


def gelu(x, fx: int, fy: int, stats=None, name=None) -> np.ndarray:
    """GELU (erf form) by the ``gelu`` table on [-8, 8]; x above 8 passes, below -8 gives 0."""
    spec = luts.SPECS["gelu"]
    xi = fp.rshift_round(x, fx - spec.in_frac)
    y_tab = fp.rshift_round(luts.pwl("gelu", xi), spec.out_frac - fy)
    y_pass = fp.rshift_round(x, fx - fy)
    y = np.where(xi > (spec.hi << spec.in_frac), y_pass, np.where(xi < (spec.lo << spec.in_frac), 0, y_tab))
    return fp.saturate(y, stats, name)


def softmax_wide(s, fs: int, valid=None) -> np.ndarray:
    """Softmax over the last axis of scores s at fs -> probabilities at SCORE_FRAC (wide).

    valid (broadcastable bool) marks the keys a row attends to; the others get p = 0.
    z = s - rowmax at EXP_IN_FRAC (clamped to [-16, 0]); e = exp table (e(0) = 2**24);
    S = sum e; 1/S = r * 2**-sh by the recip table; p = e * r shifted to SCORE_FRAC.
    """
    s = np.asarray(s, dtype=np.int64)
    if valid is None:
        valid = np.ones(s.shape, dtype=bool)
    valid = np.broadcast_to(valid, s.shape)
    m = np.where(valid, s, np.iinfo(np.int64).min // 4).max(-1, keepdims=True)
    z = fp.rshift_round(s - m, fs - EXP_IN_FRAC)
    e = np.where(valid, luts.pwl("exp", np.maximum(z, luts.SPECS["exp"].lo << EXP_IN_FRAC)), 0)
    total = e.sum(-1, keepdims=True)  # >= 2**24: the row maximum contributes exp(0)
    r, sh = luts.recip(total)
    return fp.rshift_round(e * r, sh - SCORE_FRAC)


def softmax(s, fs: int, valid=None, stats=None, name=None) -> np.ndarray:
    """Softmax stored at PROB_FRAC: :func:`softmax_wide` rounded once more to 16 bits."""
    return narrow_probs(softmax_wide(s, fs, valid), stats, name)


def narrow_probs(p_wide, stats=None, name=None) -> np.ndarray:
    """SCORE_FRAC probabilities -> the stored 16-bit ones at PROB_FRAC (1.0 saturates)."""
    return fp.saturate(fp.rshift_round(p_wide, SCORE_FRAC - PROB_FRAC), stats, name)


def scale_shift(head_dim: int) -> int:
    """The attention scale head_dim**-0.5 as a right shift; head_dim must be a power of 4."""
    sh = int(np.log2(head_dim)) // 2
    if 4**sh != head_dim:
        raise ValueError(f"head_dim {head_dim} is not a power of 4: its scale is not a shift")
    return sh


def split_heads(qkv, num_heads: int):
    """(B, N, 3C) -> q, k, v each (B, H, N, D), as timm orders its qkv projection."""
    B, N, C3 = qkv.shape
    t = np.asarray(qkv).reshape(B, N, 3, num_heads, C3 // (3 * num_heads)).transpose(2, 0, 3, 1, 4)
    return t[0], t[1], t[2]


def merge_heads(x) -> np.ndarray:
    """(B, H, N, D) -> (B, N, H*D)."""
    B, H, N, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * D)


def attention(qkv, fqkv: int, num_heads: int, fctx: int, mask=None, stats=None, name=None):
    """Dense (optionally masked) multi-head attention core, softmax(q k^T * scale) v.

    qkv (B, N, 3C) at fqkv; mask (B, 1, N, N) bool or None. Returns (ctx (B, N, C) at fctx,
    probs (B, H, N, N) at PROB_FRAC, wide probs at SCORE_FRAC for the TA-Selector).
    The scores are never rounded to 16 bits: each query row's q k^T accumulators (48-bit,
    at 2 fqkv + sh fractional bits, the scale being the shift sh) go straight into the
    softmax. Masked entries are never computed by the engine: their probability is
    exactly 0, so this equals :func:`attention_sparse`.
    """
    q, k, v = split_heads(qkv, num_heads)
    sh = scale_shift(q.shape[-1])
    s = fp.matmul(q, k.swapaxes(-1, -2))  # (B, H, N, N) accumulators at 2 fqkv + sh
    p_wide = softmax_wide(s, 2 * fqkv + sh, mask)
    p = narrow_probs(p_wide)
    _count(stats, None if name is None else name + ".probs", p, mask, hi_only=True)
    ctx = fp.requantize(
        fp.matmul(p, v), PROB_FRAC + fqkv, fctx, stats, None if name is None else name + ".ctx"
    )
    return merge_heads(ctx), p, p_wide


def _count(stats, name, t, mask, hi_only=False):
    """Saturation count over the entries the engine computes (mask True)."""
    if stats is None or name is None:
        return
    hit = t >= fp.QMAX if hi_only else (t >= fp.QMAX) | (t <= fp.QMIN)
    if mask is None:
        stats.add(name, 0 if hi_only else np.count_nonzero(hit), t.size)
    else:
        m = np.broadcast_to(mask, t.shape)
        stats.add(name, 0 if hi_only else np.count_nonzero(hit & m), np.count_nonzero(m))


def attention_sparse(qkv, fqkv: int, num_heads: int, fctx: int, conn, prefix: int):
    """Attention over connection index lists, as the engine computes it (one row at a time).

    conn (B, Np, n_conn): for patch row i, the patch keys it attends to (indices into the
    patch part); prefix rows attend to every key and every row to the prefix keys.
    Returns ctx (B, N, C) at fctx, bit-identical to :func:`attention` with the same mask.
    """
    q, k, v = split_heads(qkv, num_heads)  # (B, H, N, D)
    B, H, N, D = q.shape
    sh = scale_shift(D)
    out = np.zeros((B, H, N, D), dtype=np.int64)
    # prefix rows: dense
    fs = 2 * fqkv + sh  # scores stay in the accumulator
    s = fp.matmul(q[:, :, :prefix], k.swapaxes(-1, -2))
    out[:, :, :prefix] = fp.requantize(fp.matmul(softmax(s, fs), v), PROB_FRAC + fqkv, fctx)
    # patch rows: keys = prefix keys followed by the listed patch keys
    pre = np.broadcast_to(np.arange(prefix), conn.shape[:2] + (prefix,))
    keys = np.concatenate([pre, np.asarray(conn) + prefix], axis=-1)  # (B, Np, prefix + n_conn)
    bi = np.arange(B)[:, None, None, None]
    hi = np.arange(H)[None, :, None, None]
    kg = k[bi, hi, keys[:, None]]  # (B, H, Np, L, D)
    vg = v[bi, hi, keys[:, None]]
    qp = q[:, :, prefix:]  # (B, H, Np, D)
    s = np.einsum("bhid,bhild->bhil", qp.astype(np.float64), kg.astype(np.float64)).astype(np.int64)
    p = softmax(s, fs)
    acc = np.einsum("bhil,bhild->bhid", p.astype(np.float64), vg.astype(np.float64)).astype(np.int64)
    out[:, :, prefix:] = fp.requantize(acc, PROB_FRAC + fqkv, fctx)
    return merge_heads(out)


def topk_ascending(scores, k: int) -> np.ndarray:
    """Indices of the k largest entries along the last axis (ties: lower index first), ascending."""
    order = np.argsort(-np.asarray(scores, dtype=np.int64), axis=-1, kind="stable")[..., :k]
    return np.sort(order, axis=-1)


def select_tokens(probs, prefix: int, n_keep: int) -> np.ndarray:
    """TA-Selector token level: (B, n_keep) patch indices with the largest head-summed [CLS] row.

    probs (B, H, N, N): the wide probabilities (SCORE_FRAC). Summing over heads ranks
    exactly like the head mean.
    """
    cls_row = probs[:, :, 0, prefix:].sum(axis=1)  # (B, Np)
    return topk_ascending(cls_row, n_keep)


def select_connections(probs, idx, prefix: int, n_conn: int) -> np.ndarray:
    """TA-Selector attention level: per kept patch row, the n_conn kept patch keys with the
    largest head-summed attention (B, n_keep, n_conn), indices into the kept patch part."""
    avg = probs[:, :, prefix:, prefix:].sum(axis=1)  # (B, Np, Np)
    bi = np.arange(idx.shape[0])[:, None, None]
    kept = avg[bi, idx[:, :, None], idx[:, None, :]]  # (B, n_keep, n_keep)
    return topk_ascending(kept, n_conn)


def connection_mask(conn, prefix: int) -> np.ndarray:
    """(B, 1, M, M) bool from connection lists: prefix rows and prefix keys dense."""
    B, n, _ = conn.shape
    M = prefix + n
    mask = np.zeros((B, M, M), dtype=bool)
    mask[:, :prefix] = True
    mask[:, :, :prefix] = True
    bi = np.arange(B)[:, None, None]
    ri = np.arange(n)[None, :, None] + prefix
    mask[bi, ri, np.asarray(conn) + prefix] = True
    return mask[:, None]


def gather_tokens(x, idx, prefix: int) -> np.ndarray:
    """(B, N, C) -> (B, prefix + n_keep, C): prefix tokens, then the patch tokens at idx."""
    bi = np.arange(x.shape[0])[:, None]
    return np.concatenate([x[:, :prefix], x[:, prefix:][bi, idx]], axis=1)


def patchify(img, patch: int) -> np.ndarray:
    """(B, Cin, H, W) -> (B, Np, Cin*p*p), patches row-major, each in (cin, kh, kw) order (conv layout)."""
    B, Cin, H, W = img.shape
    t = np.asarray(img).reshape(B, Cin, H // patch, patch, W // patch, patch)
    return t.transpose(0, 2, 4, 1, 3, 5).reshape(B, (H // patch) * (W // patch), Cin * patch * patch)
