"""Attention under a TA-Selector's connection mask, through a timm Attention's own submodules.

The mask arrives as an additive bias (B, 1, M, M) of 0 and -inf
(:func:`trilevel.selection.connection_bias`), built once per selector and shared by the
blocks after it, and goes to ``F.scaled_dot_product_attention`` as it is (PyTorch 2.11 on
an H100 runs cuDNN's kernel for it). ``bench/attention_kernels.py`` measured the other ways
at DeiT-T's shapes (the boolean mask this replaced, forcing the memory-efficient or the
cuDNN kernel, the product written out for inductor, attention over gathered index lists):
none was faster, and the gathered lists were 30x slower (docs/results.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_forward(attn, x: torch.Tensor, bias: torch.Tensor | None):
    """timm Attention forward through its own submodules, optionally under a connection bias.

    x: (B, N, C); bias: None or (B, 1, N, N). Returns (out (B, N, C), q, k (B, H, N, D)),
    q and k for the selector's scores. Without a bias SDPA runs its unmasked kernel.
    """
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, D) each
    q, k = attn.q_norm(q), attn.k_norm(k)
    if bias is not None:
        bias = bias.to(q.dtype)  # SDPA wants the bias in the dtype of q (bf16 under autocast)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0
    )
    out = out.transpose(1, 2).reshape(B, N, -1)
    out = attn.norm(out) if hasattr(attn, "norm") else out
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), q, k
