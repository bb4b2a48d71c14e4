"""A model package back into PyTorch: the timm model of its manifest, dequantised weights, patched.

The inverse of the export for the weights: ``int * 2^-frac_bits`` per tensor into the
state_dict of ``timm.create_model(model.timm_name, img_size, patch_size, ...)``, then
:func:`trilevel.patch.patch` with the manifest's selector (locations, token_keep, attn_keep).
Used to look at a package trained on the engine (``trilevel-host train``) with the PyTorch
tools (validation, visualisation, further training on a GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from trilevel_host.package import Package, load_package

from trilevel import models
from trilevel.patch import patch

from . import arch


class PackageImportError(ValueError):
    """A package whose model cannot be rebuilt in timm (the message says which part)."""


def timm_kwargs(model_section: dict) -> dict:
    """timm.create_model keyword arguments that rebuild the manifest's ``model`` section."""
    m = model_section
    ratio = m["mlp_hidden"] / m["embed_dim"]
    return dict(
        img_size=m["img_size"], patch_size=m["patch_size"], in_chans=m["in_chans"],
        num_classes=m["num_classes"], embed_dim=m["embed_dim"], depth=m["depth"],
        num_heads=m["num_heads"], mlp_ratio=ratio,
    )  # fmt: skip


def dequantised_state_dict(pkg: Package) -> dict[str, torch.Tensor]:
    """timm key -> float32 tensor (int16 value * 2^-frac_bits), the package's shapes."""
    out = {}
    for key, e in pkg.manifest["weights"].items():
        w = pkg.tensor(key).astype(np.float64) * 2.0 ** -e["frac_bits"]
        out[key] = torch.from_numpy(w.astype(np.float32))
    return out


def model_from_package(pkg: Package | str | Path) -> VisionTransformer:
    """The patched timm model of ``pkg`` (a Package or a package folder), in eval mode."""
    if not isinstance(pkg, Package):
        pkg = load_package(pkg)
    m = pkg.manifest["model"]
    name = m.get("timm_name")
    if not isinstance(name, str):
        raise PackageImportError("the manifest's model section has no timm_name")
    model = models.create(name, timm_kwargs(m))
    for blk in model.blocks:  # the eps the package was quantised with (timm's ViT default is 1e-6)
        for norm in (blk.norm1, blk.norm2):
            norm.eps = m["ln_eps"]
    model.norm.eps = m["ln_eps"]
    rebuilt = arch.describe(model)
    for k, v in rebuilt.items():
        if m.get(k) != v:
            raise PackageImportError(f"timm's {name} rebuilt with {k} = {v}, the manifest says {m.get(k)}")
    state = dequantised_state_dict(pkg)
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise PackageImportError(f"the package's weights and timm's {name} differ in {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=True)
    s = pkg.manifest["selector"]
    patch(model, float(s["token_keep"]), float(s["attn_keep"]), tuple(s["locations"]))
    return model.eval()
