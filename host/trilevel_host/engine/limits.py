"""What this engine build can run: a package's model against config.h's maxima and tables.

:func:`check_supported` raises :class:`~.ops.UnsupportedPackage` with one line naming the first
thing the engine cannot do, so a package is refused before anything is written to a device.
"""

from __future__ import annotations

import numpy as np

from .. import luts
from ..reference.model import ModelConfig
from .abi import abi, config
from .ops import UnsupportedPackage


def _limits(cfg: ModelConfig) -> list[tuple[str, int, str]]:
    """(what, value, config.h maximum) for every size the engine bounds."""
    kp = cfg.in_chans * cfg.patch_size**2
    return [
        ("tokens", cfg.num_patches + cfg.num_prefix_tokens, "MAX_TOKENS"),
        ("embed_dim", cfg.embed_dim, "MAX_DIM"),
        ("num_heads", cfg.num_heads, "MAX_HEADS"),
        ("head_dim", cfg.head_dim, "MAX_HEAD_DIM"),
        ("mlp_hidden", cfg.mlp_hidden, "MAX_HIDDEN"),
        ("patch-embedding K (in_chans * patch_size^2)", kp, "MAX_K"),
        ("fc2 K (mlp_hidden)", cfg.mlp_hidden, "MAX_K"),
        ("qkv outputs (3 embed_dim)", 3 * cfg.embed_dim, "MAX_OUT"),
        ("fc1 outputs (mlp_hidden)", cfg.mlp_hidden, "MAX_OUT"),
        ("num_classes", cfg.num_classes, "MAX_OUT"),
        ("img_size", cfg.img_size, "MAX_IMG"),
        ("in_chans", cfg.in_chans, "MAX_CIN"),
        ("patch_size", cfg.patch_size, "MAX_PATCH"),
        ("num_prefix_tokens", cfg.num_prefix_tokens, "MAX_PREFIX"),
    ]


def check_supported(manifest: dict, cfg: ModelConfig) -> None:
    """Refuse a model the engine cannot run; returns None when it can."""
    c = config()
    for what, value, key in _limits(cfg):
        if value > c[key]:
            raise UnsupportedPackage(
                f"{what} = {value} is over the engine's {key} = {c[key]} (hls/include/config.h)"
            )
    model = manifest["model"]
    if cfg.num_prefix_tokens != 1 or model.get("pool") != "token":
        raise UnsupportedPackage(
            "the engine's head reads one [CLS] token: num_prefix_tokens must be 1, pool 'token'"
        )
    if model.get("activation") != "gelu_erf":
        raise UnsupportedPackage(
            f"activation {model.get('activation')!r}: the engine's table is the erf GELU"
        )
    if cfg.img_size % cfg.patch_size:
        raise UnsupportedPackage(f"img_size {cfg.img_size} is not a multiple of patch_size {cfg.patch_size}")
    if cfg.embed_dim != cfg.num_heads * cfg.head_dim:
        raise UnsupportedPackage(f"embed_dim {cfg.embed_dim} is not num_heads x head_dim")
    log4 = int(np.log2(cfg.head_dim)) // 2
    if 4**log4 != cfg.head_dim:
        raise UnsupportedPackage(
            f"head_dim {cfg.head_dim} is not a power of 4 (the attention scale must be a shift)"
        )
    _check_tables(manifest)


def _check_tables(manifest: dict) -> None:
    """The package's tables must be the engine's: same constants, same knots (the reference's)."""
    engine = abi()["luts"]
    for name in luts.SPECS:
        entry = manifest["luts"].get(name)
        if entry is None:
            raise UnsupportedPackage(f"the package has no {name} table")
        key = name.upper()
        for const in ("lo", "hi", "in_frac", "step_bits", "out_frac"):
            if entry.get(const) != engine[f"{key}_{const.upper()}"]:
                raise UnsupportedPackage(
                    f"table {name}: {const} = {entry.get(const)} but the engine's is {engine[f'{key}_{const.upper()}']}"
                )
        if list(entry.get("shape", [])) != [engine[f"{key}_KNOTS"]]:
            raise UnsupportedPackage(
                f"table {name}: {entry.get('shape')} knots, the engine takes {engine[f'{key}_KNOTS']}"
            )


def check_knots(name: str, knots: np.ndarray) -> None:
    """The knots themselves must be those the constants generate (the oracle evaluates those)."""
    if not np.array_equal(knots, luts.table(name)):
        raise UnsupportedPackage(f"table {name}: its knots differ from the ones its constants generate")
