"""Activation ranges of the float model on calibration images, by forward hooks.

Hooks sit on the modules the patched model calls (both for plain blocks and for selector
blocks, which call their submodules by name), so the ranges are those of the sparse model
that the engine runs. Names follow ``trilevel_host.reference.model``.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from trilevel_host.fixedpoint import choose_frac_bits


def _amax(t: torch.Tensor) -> float:
    return float(t.detach().abs().max())


@torch.no_grad()
def calibrate(model, images: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """Max |x| of every activation named in the reference model, over ``images`` (n, C, H, W)."""
    amax: dict[str, float] = defaultdict(float)
    saved: dict[str, torch.Tensor] = {}

    def put(name, value):
        amax[name] = max(amax[name], value)

    hooks = []

    def fwd(mod, fn):
        hooks.append(mod.register_forward_hook(fn))

    def pre(mod, fn):
        hooks.append(mod.register_forward_pre_hook(fn))

    fwd(model.patch_embed, lambda m, i, o: put("patch_embed.out", _amax(o)))
    pre(model.blocks[0], lambda m, i: put("embed.out", _amax(i[0])))
    fwd(model.norm, lambda m, i, o: put("norm.out", _amax(o[:, 0])))
    fwd(model.head, lambda m, i, o: put("head.out", _amax(o)))
    for bi, block in enumerate(model.blocks):
        p = f"blocks.{bi}"
        attn = block.attn

        def norm1_pre(m, i, p=p):
            saved[p + ".in"] = i[0]

        def proj_hook(m, i, o, p=p):
            put(p + ".attn.ctx", _amax(i[0]))
            put(p + ".attn.proj.out", _amax(o))
            put(p + ".resid1.out", _amax(saved[p + ".in"] + o))

        def norm2_pre(m, i, p=p):
            saved[p + ".mid"] = i[0]

        def fc2_hook(m, i, o, p=p):
            put(p + ".mlp.fc2.out", _amax(o))
            put(p + ".out", _amax(saved[p + ".mid"] + o))

        pre(block.norm1, norm1_pre)
        fwd(block.norm1, lambda m, i, o, p=p: put(p + ".norm1.out", _amax(o)))
        fwd(attn.qkv, lambda m, i, o, p=p: put(p + ".attn.qkv.out", _amax(o)))
        fwd(attn.proj, proj_hook)
        pre(block.norm2, norm2_pre)
        fwd(block.norm2, lambda m, i, o, p=p: put(p + ".norm2.out", _amax(o)))
        fwd(block.mlp.fc1, lambda m, i, o, p=p: put(p + ".mlp.fc1.out", _amax(o)))
        fwd(block.mlp.act, lambda m, i, o, p=p: put(p + ".mlp.act.out", _amax(o)))
        fwd(block.mlp.fc2, fc2_hook)
    try:
        for s in range(0, len(images), batch_size):
            x = images[s : s + batch_size]
            put("input", _amax(x))
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return dict(amax)


def activation_formats(amax: dict[str, float]) -> dict[str, int]:
    """Power-of-two format per activation: the largest frac_bits that holds the calibrated max."""
    return {name: choose_frac_bits(v) for name, v in amax.items()}
