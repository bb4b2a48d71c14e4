"""A package-like object for a model shape alone: random int16 weights, the real tables.

The cycle model needs the descriptor list of models nobody has trained and exported here
(DeiT-T and DeiT-S at 224x224): :func:`synthetic_package` gives :func:`~.program.build_program`
what it reads from a :class:`~trilevel_host.package.Package` (the manifest's model, selector,
weights, activations and tables sections, ``tensor()`` and ``lut()``), with random weights and
fixed, valid formats. Its outputs mean nothing; its op list and sizes are the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import luts

# Model shapes (timm's definitions of the paper's models); the tiny one is tests/tiny_vit.py's.
SHAPES: dict[str, dict] = {
    "deit_tiny_patch16_224": dict(
        img_size=224, patch_size=16, in_chans=3, embed_dim=192, depth=12, num_heads=3, mlp_hidden=768,
        num_classes=1000, locations=(3, 6, 9),
    ),
    "deit_small_patch16_224": dict(
        img_size=224, patch_size=16, in_chans=3, embed_dim=384, depth=12, num_heads=6, mlp_hidden=1536,
        num_classes=1000, locations=(3, 6, 9),
    ),
    "tiny": dict(
        img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=4, num_heads=2, mlp_hidden=64,
        num_classes=10, locations=(1, 2),
    ),
}  # fmt: skip

WEIGHT_FRAC = 12  # any valid formats: these keep every shift well inside the ABI's range
ACT_FRAC = 8


@dataclass
class SyntheticPackage:
    """Duck-types :class:`~trilevel_host.package.Package` for :func:`~.program.build_program`."""

    manifest: dict
    weights: dict[str, np.ndarray]

    def tensor(self, name: str) -> np.ndarray:
        return self.weights[name]

    def lut(self, name: str) -> np.ndarray:
        return luts.table(name)


def _weight_shapes(s: dict) -> dict[str, tuple[int, ...]]:
    C, H, p, n = s["embed_dim"], s["mlp_hidden"], s["patch_size"], (s["img_size"] // s["patch_size"]) ** 2
    shapes = {
        "cls_token": (1, 1, C),
        "pos_embed": (1, n + 1, C),
        "patch_embed.proj.weight": (C, s["in_chans"], p, p),
        "patch_embed.proj.bias": (C,),
    }
    for i in range(s["depth"]):
        b = f"blocks.{i}"
        shapes |= {
            f"{b}.norm1.weight": (C,), f"{b}.norm1.bias": (C,),
            f"{b}.attn.qkv.weight": (3 * C, C), f"{b}.attn.qkv.bias": (3 * C,),
            f"{b}.attn.proj.weight": (C, C), f"{b}.attn.proj.bias": (C,),
            f"{b}.norm2.weight": (C,), f"{b}.norm2.bias": (C,),
            f"{b}.mlp.fc1.weight": (H, C), f"{b}.mlp.fc1.bias": (H,),
            f"{b}.mlp.fc2.weight": (C, H), f"{b}.mlp.fc2.bias": (C,),
        }  # fmt: skip
    shapes |= {"norm.weight": (C,), "norm.bias": (C,), "head.weight": (s["num_classes"], C),
               "head.bias": (s["num_classes"],)}  # fmt: skip
    return shapes


def _activation_names(depth: int) -> list[str]:
    per_block = ("norm1.out", "attn.qkv.out", "attn.ctx", "attn.proj.out", "resid1.out", "norm2.out",
                 "mlp.fc1.out", "mlp.act.out", "mlp.fc2.out", "out")  # fmt: skip
    names = ["input", "patch_embed.out", "embed.out"]
    names += [f"blocks.{i}.{a}" for i in range(depth) for a in per_block]
    return names + ["norm.out", "head.out"]


def synthetic_package(
    model: str, token_keep: float = 1.0, attn_keep: float = 1.0, seed: int = 0
) -> SyntheticPackage:
    """A package-like object of ``model`` (a key of :data:`SHAPES`) with random weights.

    token_keep = attn_keep = 1.0 is the dense model (no TA-Selectors); otherwise the selectors
    sit at the model's usual locations with these keep ratios.
    """
    if model not in SHAPES:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(SHAPES)}")
    s = SHAPES[model]
    rng = np.random.default_rng(seed)
    shapes = _weight_shapes(s)
    weights = {k: rng.integers(-1024, 1024, size=shp, dtype=np.int16) for k, shp in shapes.items()}
    dense = token_keep >= 1.0 and attn_keep >= 1.0
    n = (s["img_size"] // s["patch_size"]) ** 2
    manifest = {
        "model": {
            "timm_name": model, "img_size": s["img_size"], "patch_size": s["patch_size"],
            "in_chans": s["in_chans"], "embed_dim": s["embed_dim"], "depth": s["depth"],
            "num_heads": s["num_heads"], "head_dim": s["embed_dim"] // s["num_heads"],
            "mlp_hidden": s["mlp_hidden"], "num_classes": s["num_classes"], "num_prefix_tokens": 1,
            "num_patches": n, "ln_eps": 1e-6, "activation": "gelu_erf", "pool": "token",
        },
        "selector": {
            "locations": [] if dense else list(s["locations"]),
            "token_keep": 1.0 if dense else token_keep,
            "attn_keep": 1.0 if dense else attn_keep,
        },
        "luts": {name: spec.to_json() | {"shape": [spec.n_knots], "dtype": "int32"}
                 for name, spec in luts.SPECS.items()},
        "weights": {k: {"shape": list(shp), "dtype": "int16", "frac_bits": WEIGHT_FRAC}
                    for k, shp in shapes.items()},
        "activations": {a: {"frac_bits": ACT_FRAC} for a in _activation_names(s["depth"])},
    }  # fmt: skip
    return SyntheticPackage(manifest, weights)
