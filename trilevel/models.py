"""Model construction: any timm ViT by name, plus small presets for Fashion-MNIST."""

from __future__ import annotations

import timm
from timm.models.vision_transformer import VisionTransformer

# A ViT small enough to train on two CPU cores and to run through the fixed-point
# reference in numpy: 28x28 input, 4x4 patches (49 tokens), 6 blocks of width 64.
PRESETS: dict[str, tuple[str, dict]] = {
    "fmnist-tiny": (
        "vit_tiny_patch16_224",
        dict(img_size=28, patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0),
    ),
}


def resolve(name: str, **overrides) -> tuple[str, dict]:
    """(timm name, kwargs) for a preset or a timm model name, with or without a pretrained tag
    (``deit_tiny_patch16_224.fb_in1k``; nothing is downloaded, the tag only names the config)."""
    base, kwargs = PRESETS.get(name, (name, {}))
    arch, tag = timm.models.split_model_name_tag(base)
    if not timm.is_model(arch) or (tag and base not in timm.list_pretrained(arch + ".*")):
        raise ValueError(f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}) nor a timm model")
    return base, {**kwargs, **{k: v for k, v in overrides.items() if v is not None}}


def create(timm_name: str, kwargs: dict) -> VisionTransformer:
    """Build the model from scratch (no pretrained weights: nothing is downloaded)."""
    model = timm.create_model(timm_name, pretrained=False, **kwargs)
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"{timm_name} is a {type(model).__name__}, not a timm VisionTransformer")
    return model


def default_locations(depth: int) -> tuple[int, ...]:
    """The paper's (3, 6, 9) for 12 blocks; the same quarters of the depth otherwise."""
    if depth == 12:
        return (3, 6, 9)
    return tuple(sorted({min(depth - 1, max(1, round(depth * q / 4))) for q in (1, 2, 3)}))
