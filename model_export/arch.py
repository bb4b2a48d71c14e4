"""What the engine supports, read off a timm VisionTransformer: the manifest's ``model`` section.

The engine implements one block shape, DeiT's: [CLS] token, learned position embedding
that covers [CLS], pre-norm blocks without LayerScale or q/k norm, exact (erf) GELU, token
pooling, a single linear head. Anything else is refused with a message naming the part.
"""

from __future__ import annotations

import torch.nn as nn


class UnsupportedModel(ValueError):
    pass


def describe(model) -> dict:
    """The ``model`` section of the manifest; raises UnsupportedModel for other architectures."""
    problems = []
    if model.cls_token is None or model.num_prefix_tokens != 1:
        problems.append("needs exactly one prefix token ([CLS], no register tokens)")
    if getattr(model, "no_embed_class", False) or model.pos_embed is None:
        problems.append("needs a position embedding that covers [CLS]")
    if model.global_pool != "token":
        problems.append(f"global_pool {model.global_pool!r} (needs 'token')")
    for part in ("norm_pre", "fc_norm"):
        if not isinstance(getattr(model, part), nn.Identity):
            problems.append(f"{part} is not Identity")
    if not isinstance(model.head, nn.Linear):
        problems.append("head is not one Linear layer")
    proj = model.patch_embed.proj
    if proj.kernel_size != proj.stride or proj.bias is None:
        problems.append("patch embedding is not a non-overlapping conv with bias")
    for i, b in enumerate(model.blocks):
        for part in ("ls1", "ls2", "drop_path1", "drop_path2"):
            if not isinstance(getattr(b, part, None), nn.Identity) and part.startswith("ls"):
                problems.append(f"blocks.{i}.{part} (LayerScale) is not supported")
        for part in ("q_norm", "k_norm", "norm"):
            if not isinstance(getattr(b.attn, part, nn.Identity()), nn.Identity):
                problems.append(f"blocks.{i}.attn.{part} is not supported")
        for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            if b.get_submodule(name).bias is None:
                problems.append(f"blocks.{i}.{name} has no bias (qkv_bias=False?)")
        if getattr(b.attn, "gate", None) is not None:
            problems.append(f"blocks.{i}.attn has a gate")
        act = b.mlp.act
        if not (isinstance(act, nn.GELU) and act.approximate == "none"):
            problems.append(f"blocks.{i}.mlp.act is {act} (needs exact GELU)")
        if not isinstance(b.norm1, nn.LayerNorm) or not isinstance(b.norm2, nn.LayerNorm):
            problems.append(f"blocks.{i} norms are not LayerNorm")
    head_dim = model.blocks[0].attn.head_dim
    if 4 ** (head_dim.bit_length() // 2) != head_dim:
        problems.append(f"head_dim {head_dim} is not a power of 4 (the scale must be a shift)")
    if problems:
        raise UnsupportedModel("the engine cannot run this model: " + "; ".join(problems))
    b0 = model.blocks[0]
    return {
        "img_size": int(model.patch_embed.img_size[0]),
        "patch_size": int(proj.kernel_size[0]),
        "in_chans": int(proj.in_channels),
        "embed_dim": int(model.embed_dim),
        "depth": len(model.blocks),
        "num_heads": int(b0.attn.num_heads),
        "head_dim": int(head_dim),
        "mlp_hidden": int(b0.mlp.fc1.out_features),
        "num_classes": int(model.head.out_features),
        "num_prefix_tokens": 1,
        "num_patches": int(model.patch_embed.num_patches),
        "ln_eps": float(b0.norm1.eps),
        "activation": "gelu_erf",
        "pool": "token",
    }
