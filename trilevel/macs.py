"""Analytic multiply-accumulates per image of a (patched) timm ViT.

The counts come from the same :func:`trilevel.selection.keep_count` the forward uses, so
the token and connection counts here are the ones the model actually runs with (the tests
check this against the shapes of a real forward).
"""

from __future__ import annotations

from dataclasses import dataclass

from timm.models.vision_transformer import VisionTransformer

from .patch import is_patched
from .selection import keep_count


@dataclass(frozen=True)
class BlockPlan:
    tokens_in: int  # sequence length entering the block (prefix + patches)
    tokens_out: int  # after the block's TA-Selector (== tokens_in without one)
    keys: int  # attention (query, key) pairs computed in the block, summed over queries


def block_plan(model: VisionTransformer) -> list[BlockPlan]:
    """Token and connection counts of every block at the model's current keep ratios."""
    prefix = model.num_prefix_tokens
    n_patch = model.patch_embed.num_patches
    st = model.trilevel if is_patched(model) else None
    n_conn = None  # patch keys per patch row under the current connection mask
    plans = []
    for i in range(len(model.blocks)):
        m = prefix + n_patch
        if n_conn is None:
            keys = m * m
        else:  # prefix rows dense; patch rows see the prefix plus their n_conn patch keys
            keys = prefix * m + n_patch * (prefix + n_conn)
        if st is not None and i in st.locations:
            n_keep = keep_count(n_patch, st.token_keep)
            n_conn = keep_count(n_keep, st.attn_keep) if st.attn_keep < 1.0 else None
            n_patch = n_keep
        plans.append(BlockPlan(tokens_in=m, tokens_out=prefix + n_patch, keys=keys))
    return plans


def macs_per_image(model: VisionTransformer) -> int:
    """MACs of one forward pass of one image: patch embedding, blocks and head."""
    embed = model.patch_embed.proj
    n_patch = model.patch_embed.num_patches
    kh, kw = embed.kernel_size
    total = n_patch * embed.in_channels * kh * kw * embed.out_channels
    for block, plan in zip(model.blocks, block_plan(model)):
        attn = block.attn
        attn_dim = attn.num_heads * attn.head_dim
        total += plan.tokens_in * _linear_macs(attn.qkv) + plan.tokens_in * _linear_macs(attn.proj)
        total += 2 * plan.keys * attn_dim  # q k^T and attn v
        total += plan.tokens_out * (_linear_macs(block.mlp.fc1) + _linear_macs(block.mlp.fc2))
    head = model.head
    if hasattr(head, "in_features"):
        total += _linear_macs(head)
    return int(total)


def _linear_macs(layer) -> int:
    return layer.in_features * layer.out_features


def tokens_per_stage(model: VisionTransformer) -> list[int]:
    """Patch tokens entering the model and leaving each selector, e.g. [196, 138, 97, 68]."""
    prefix = model.num_prefix_tokens
    plans = block_plan(model)
    locations = model.trilevel.locations if is_patched(model) else ()
    return [plans[0].tokens_in - prefix] + [plans[i].tokens_out - prefix for i in locations]
