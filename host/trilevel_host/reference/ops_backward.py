"""Backward operations of the engine, bit-accurate, beside their forwards in :mod:`.ops_forward`.

Gradients are 16-bit tensors whose format is chosen at run time from the accumulator
(:func:`trilevel_host.fixedpoint.dynamic_frac`, block floating point): every function
returns ``(values, frac_bits)`` pairs. Names follow the forward: x input, dy gradient of
the output, dx / dw / db gradients of input, weight and bias.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .. import luts
from .ops_forward import (
    LN_EXTRA_FRAC,
    NORM_FRAC,
    PROB_FRAC,
    merge_heads,
    rdiv,
    scale_shift,
    softmax,
    split_heads,
)

MAX_ALIGN = 40  # two gradients are summed at most this many fractional bits apart (int64 headroom)


def requant_dynamic(acc, facc: int) -> tuple[np.ndarray, int]:
    """Wide gradient at ``facc`` -> 16 bits at the finest format that holds its maximum."""
    f = fp.dynamic_frac(acc, facc)
    return fp.requantize(acc, facc, f), f


def requant_dynamic_joint(parts: list[tuple[np.ndarray, int]]) -> tuple[list[np.ndarray], int]:
    """Several accumulators that form one tensor -> one shared format (the coarsest needed)."""
    f = min(fp.dynamic_frac(acc, facc) for acc, facc in parts)
    return [fp.requantize(acc, facc, f) for acc, facc in parts], f


def add_grads(a, fa: int, b, fb: int) -> tuple[np.ndarray, int]:
    """Sum of two gradients of the same tensor (residual fork), exact at a common format, then 16 bits."""
    f = min(max(fa, fb), min(fa, fb) + MAX_ALIGN)
    s = fp.rshift_round(a, fa - f) + fp.rshift_round(b, fb - f)
    return requant_dynamic(s, f)


def cross_entropy_grad(logits, flogits: int, labels) -> tuple[np.ndarray, int]:
    """d(sum of CE)/d logits = softmax(logits) - onehot, at PROB_FRAC. logits (B, K) at flogits."""
    p = softmax(logits, flogits)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(labels)), np.asarray(labels)] = 1 << PROB_FRAC
    return fp.saturate(p - onehot), PROB_FRAC


def linear_backward(dy, fdy: int, x, fx: int, w, fw: int, need_dx: bool = True, has_bias: bool = True):
    """Backward of y = x @ w.T + b. dy (..., N), x (..., K), w (N, K).

    Returns (dx or None, dw, db or None), each (values, frac_bits); dw and db are summed
    over every leading axis (batch and tokens).
    """
    dy = np.asarray(dy, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    dy2 = dy.reshape(-1, dy.shape[-1])
    dw = requant_dynamic(fp.matmul(dy2.T, x.reshape(-1, x.shape[-1])), fdy + fx)  # (N, K)
    db = requant_dynamic(dy2.sum(0), fdy) if has_bias else None
    dx = requant_dynamic(fp.matmul(dy, np.asarray(w, dtype=np.int64)), fdy + fw) if need_dx else None
    return dx, dw, db


def layernorm_backward(dy, fdy: int, cache, g, fg: int, fx: int):
    """Backward of LayerNorm with the forward's cache (n at NORM_FRAC, r, sh: 1/sqrt(var) = r 2**-sh 2**fx).

    dn = dy g;  dx = (dn - mean(dn) - n mean(dn n)) / std;  dg = sum dy n;  db = sum dy.
    Returns (dx, dg, db), each (values, frac_bits).
    """
    n, r, sh = cache
    dy = np.asarray(dy, dtype=np.int64)
    C = dy.shape[-1]
    lead = tuple(range(dy.ndim - 1))
    dg = requant_dynamic((dy * n).sum(lead), fdy + NORM_FRAC)
    db = requant_dynamic(dy.sum(lead), fdy)
    dn = dy * np.asarray(g, dtype=np.int64)  # (..., C) at fdy + fg
    m1 = rdiv(dn.sum(-1, keepdims=True), C)
    m2 = rdiv((dn * n).sum(-1, keepdims=True), C << NORM_FRAC)  # at fdy + fg
    t = dn - m1 - fp.rshift_round(n * m2, NORM_FRAC)
    # dx = t 2**-(fdy+fg) * r 2**-sh 2**fx; shift by sh - out_frac (>= 0) so every row shares one format
    of = luts.SPECS["rsqrt"].out_frac
    v = fp.rshift_round(t * r, sh - of)
    dx = requant_dynamic(v, fdy + fg - (fx + LN_EXTRA_FRAC) + of)
    return dx, dg, db


def gelu_backward(dy, fdy: int, x, fx: int) -> tuple[np.ndarray, int]:
    """dx = dy * gelu'(x), gelu' from the ``gelu_grad`` table (1 above 8, 0 below -8)."""
    spec = luts.SPECS["gelu_grad"]
    xi = fp.rshift_round(x, fx - spec.in_frac)
    gp = luts.pwl("gelu_grad", xi)
    gp = np.where(
        xi > (spec.hi << spec.in_frac), 1 << spec.out_frac, np.where(xi < (spec.lo << spec.in_frac), 0, gp)
    )
    return requant_dynamic(np.asarray(dy, dtype=np.int64) * gp, fdy + spec.out_frac)


def attention_backward(
    dctx, fdctx: int, qkv, fqkv: int, probs, num_heads: int, mask=None
) -> tuple[np.ndarray, int]:
    """Backward of the attention core: dctx (B, N, C) -> dqkv (B, N, 3C) in one format.

    dP = dO v^T; dv = P^T dO; dS = P * (dP - rowsum(dP * P)); dq = dS k 2**-sh; dk = dS^T q 2**-sh.
    Masked entries have P = 0 exactly, so dS = 0 there: the dense formula is the sparse one.
    ``mask`` (B, 1, N, N) bool, the forward's connection mask (None: dense): dP's format comes
    from the entries the engine computes (mask True), not from pruned pairs, which cost the
    engine no cycles and never reach a result (their p is 0).
    """
    q, k, v = split_heads(qkv, num_heads)
    do = split_heads(np.concatenate([dctx] * 3, axis=-1), num_heads)[0]  # (B, H, N, D)
    sh = scale_shift(q.shape[-1])
    p = np.asarray(probs, dtype=np.int64)
    dP_acc = fp.matmul(do, v.swapaxes(-1, -2))  # (B, H, N, N) at fdctx + fqkv
    computed = dP_acc if mask is None else np.where(mask, dP_acc, 0)
    fdP = fp.dynamic_frac(computed, fdctx + fqkv)
    dP = fp.requantize(dP_acc, fdctx + fqkv, fdP)
    rowdot = (dP * p).sum(-1, keepdims=True)  # at fdP + PROB_FRAC
    dS, fdS = requant_dynamic(p * (dP - fp.rshift_round(rowdot, PROB_FRAC)), fdP + PROB_FRAC)
    parts = [
        (fp.matmul(dS, k), fdS + fqkv + sh),
        (fp.matmul(dS.swapaxes(-1, -2), q), fdS + fqkv + sh),
        (fp.matmul(p.swapaxes(-1, -2), do), PROB_FRAC + fdctx),
    ]
    (dq, dk, dv), f = requant_dynamic_joint(parts)
    return np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1), f


def scatter_tokens(dx_kept, idx, prefix: int, n_patches: int) -> np.ndarray:
    """Backward of gather_tokens: (B, prefix + n_keep, C) -> (B, prefix + n_patches, C), zeros elsewhere."""
    B, _, C = dx_kept.shape
    out = np.zeros((B, prefix + n_patches, C), dtype=np.int64)
    out[:, :prefix] = dx_kept[:, :prefix]
    out[np.arange(B)[:, None], np.asarray(idx) + prefix] = dx_kept[:, prefix:]
    return out


def model_backward(model, fwd, labels) -> dict[str, tuple[np.ndarray, int]]:
    """All weight gradients of a :class:`~.model.ReferenceModel` for the batch of ``fwd``."""
    cfg, a, W, wf, c = model.cfg, model.afmt, model.w, model.wfmt, fwd.cache
    pre = cfg.num_prefix_tokens
    grads: dict[str, tuple[np.ndarray, int]] = {}

    def put(prefix, dw, db):
        grads[prefix + ".weight"] = dw
        if db is not None:
            grads[prefix + ".bias"] = db

    dlog = cross_entropy_grad(fwd.logits, a["head.out"], labels)
    grads["loss.dlogits"] = dlog
    (dnf, fdnf), dw, db = linear_backward(*dlog, c["nf"], a["norm.out"], W["head.weight"], wf["head.weight"])
    put("head", dw, db)
    (dcls, fdh), dg, db = layernorm_backward(
        dnf, fdnf, c["lnf"], W["norm.weight"], wf["norm.weight"], c["fh_last"]
    )
    put("norm", dg, db)
    h_last = c["h_last"]
    dh = np.zeros(h_last.shape, dtype=np.int64)
    dh[:, 0] = dcls  # only [CLS] reaches the head
    for i in reversed(range(cfg.depth)):
        p, blk = f"blocks.{i}", c[f"blocks.{i}"]
        # h_out = r1 + fc2(gelu(fc1(norm2(r1))))
        (dg_, fdg), dw, db = linear_backward(
            dh, fdh, blk["g"], a[p + ".mlp.act.out"], W[p + ".mlp.fc2.weight"], wf[p + ".mlp.fc2.weight"]
        )
        put(p + ".mlp.fc2", dw, db)
        df1, fdf1 = gelu_backward(dg_, fdg, blk["f1"], a[p + ".mlp.fc1.out"])
        (dn2, fdn2), dw, db = linear_backward(
            df1, fdf1, blk["n2"], a[p + ".norm2.out"], W[p + ".mlp.fc1.weight"], wf[p + ".mlp.fc1.weight"]
        )
        put(p + ".mlp.fc1", dw, db)
        (dr1b, fdr1b), dg, db = layernorm_backward(
            dn2, fdn2, blk["ln2"], W[p + ".norm2.weight"], wf[p + ".norm2.weight"], a[p + ".resid1.out"]
        )
        put(p + ".norm2", dg, db)
        dr1, fdr1 = add_grads(dh, fdh, dr1b, fdr1b)
        if "idx" in blk:  # the TA-Selector gathered r1: scatter its gradient back
            dr1 = scatter_tokens(dr1, blk["idx"], pre, blk["h"].shape[1] - pre)
        # r1 = h + proj(attn(qkv(norm1(h))))
        (dctx, fdctx), dw, db = linear_backward(
            dr1, fdr1, blk["ctx"], a[p + ".attn.ctx"], W[p + ".attn.proj.weight"], wf[p + ".attn.proj.weight"]
        )
        put(p + ".attn.proj", dw, db)
        dqkv, fdqkv = attention_backward(
            dctx, fdctx, blk["qkv"], a[p + ".attn.qkv.out"], blk["probs"], cfg.num_heads, blk["mask"]
        )
        (dn1, fdn1), dw, db = linear_backward(
            dqkv, fdqkv, blk["n1"], a[p + ".norm1.out"], W[p + ".attn.qkv.weight"], wf[p + ".attn.qkv.weight"]
        )
        put(p + ".attn.qkv", dw, db)
        (dhb, fdhb), dg, db = layernorm_backward(
            dn1, fdn1, blk["ln1"], W[p + ".norm1.weight"], wf[p + ".norm1.weight"], blk["fh"]
        )
        put(p + ".norm1", dg, db)
        dh, fdh = add_grads(dr1, fdr1, dhb, fdhb)
    # embedding: h0 = concat(cls, patch_embed(patches)) + pos
    grads["pos_embed"] = requant_dynamic(dh.sum(0, keepdims=True), fdh)
    grads["cls_token"] = requant_dynamic(dh[:, :pre].sum(0, keepdims=True), fdh)
    _, (dw, fdw), db = linear_backward(
        dh[:, pre:],
        fdh,
        c["patches"],
        a["input"],
        W["patch_embed.proj.weight"],
        wf["patch_embed.proj.weight"],
        need_dx=False,
    )
    grads["patch_embed.proj.weight"] = (dw.reshape(W["patch_embed.proj.weight"].shape), fdw)
    grads["patch_embed.proj.bias"] = db
    return grads
