"""Attention under a TA-Selector's connection mask, through a timm Attention's own submodules.

The mask arrives as an additive bias (B, 1, M, M) of 0 and -inf
(:func:`trilevel.selection.connection_bias`), built once per selector and shared by the
blocks after it. How the masked product is computed is a per-model knob
(``model.trilevel.masked_attention``), measured in ``bench/attention_kernels.py``:

- ``"sdpa"``: ``F.scaled_dot_product_attention`` with the bias, the kernel PyTorch picks;
- ``"cudnn"``, ``"efficient"``: the same call restricted to one SDPA kernel;
- ``"math"``: the product written out, so that torch.compile fuses bias and softmax.

All four compute the same function (tests/test_patch_timm.py checks them against the
boolean-mask SDPA they replaced and against attention over each row's connection list).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

MASKED_ATTENTION = ("sdpa", "cudnn", "efficient", "math")
_ONE_KERNEL = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, dropout_p: float, how: str
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + bias) v. q, k, v: (B, H, M, D); bias: (B, 1, M, M) -> (B, H, M, D)."""
    if how == "math":
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias  # (B, H, M, M)
        # The softmax in at least float32 (bf16 scores are too coarse for it), as SDPA does.
        probs = scores.softmax(dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
        return F.dropout(probs, dropout_p) @ v
    if how in _ONE_KERNEL:
        with sdpa_kernel([_ONE_KERNEL[how]]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


def attention_forward(attn, x: torch.Tensor, bias: torch.Tensor | None, how: str = "sdpa"):
    """timm Attention forward through its own submodules, optionally under a connection bias.

    x: (B, N, C); bias: None or (B, 1, N, N). Returns (out (B, N, C), q, k (B, H, N, D)),
    q and k for the selector's scores. Without a bias SDPA runs its flash kernel.
    """
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, D) each
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    if bias is None:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    else:
        out = masked_attention(q, k, v, bias.to(q.dtype), dropout_p, how)
    out = out.transpose(1, 2).reshape(B, N, -1)
    out = attn.norm(out) if hasattr(attn, "norm") else out
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), q, k
