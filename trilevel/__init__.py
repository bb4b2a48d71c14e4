"""Tri-Level E-ViT: example-, token- and attention-level sparsity for training timm ViTs."""

from .macs import block_plan, macs_per_image, tokens_per_stage
from .patch import TriLevelState, is_patched, patch, unpatch

__all__ = [
    "patch",
    "unpatch",
    "is_patched",
    "TriLevelState",
    "macs_per_image",
    "block_plan",
    "tokens_per_stage",
]
