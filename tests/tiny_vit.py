"""A tiny Tri-Level ViT for the export and fixed-point tests: built, briefly trained, saved.

28x28 Fashion-MNIST, 7x7 patches (16 tokens + [CLS]), width 32, 4 blocks of 2 heads
(head_dim 16), selectors in blocks 1 and 2; block 3 attends over
the connection lists of the second selector. A few hundred AdamW steps give a model whose
attention is far from uniform, so token rankings are not decided by rounding noise.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from model_export.data import load_split, normalize
from trilevel import models
from trilevel.checkpoint import save_checkpoint
from trilevel.config import TrainConfig
from trilevel.patch import patch

TIMM_NAME = "vit_tiny_patch16_224"
KWARGS = dict(
    img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=4, num_heads=2, mlp_ratio=2.0
)
LOCATIONS = (1, 2)


def build(token_keep: float = 0.7, attn_keep: float = 0.5, seed: int = 0):
    torch.manual_seed(seed)
    model = models.create(TIMM_NAME, dict(KWARGS))
    return patch(model, token_keep, attn_keep, LOCATIONS)


def train(model, steps: int = 300, batch: int = 128, seed: int = 0, data_dir=None):
    ds = load_split("train", data_dir)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(ds), (batch,), generator=g)
        x = normalize(ds.images[i], ds.mean, ds.std)
        loss = torch.nn.functional.cross_entropy(model(x), ds.labels[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def save(model, path: Path, example_active: torch.Tensor | None = None) -> Path:
    st = model.trilevel
    cfg = TrainConfig(model=TIMM_NAME, token_keep=st.token_keep, attn_keep=st.attn_keep, locations=LOCATIONS)
    save_checkpoint(
        path,
        {
            "config": cfg.to_dict(),
            "model_spec": {"timm_name": TIMM_NAME, "kwargs": dict(KWARGS)},
            "trilevel": {
                "token_keep": st.token_keep,
                "attn_keep": st.attn_keep,
                "locations": list(LOCATIONS),
                "stat_layer": None,
            },
            "model": model.state_dict(),
            "example_selector": None if example_active is None else {"active": example_active},
        },
    )
    return path


_WORKDIR: Path | None = None


def workdir() -> Path:
    """One temporary folder per test session for the cached checkpoint and package."""
    global _WORKDIR
    if _WORKDIR is None:
        _WORKDIR = Path(tempfile.mkdtemp(prefix="trilevel-tiny-"))
        atexit.register(shutil.rmtree, _WORKDIR, True)
    return _WORKDIR


@functools.cache
def checkpoint() -> Path:
    """A trained tiny checkpoint with an example subset (about 10 s, once per session)."""
    model = train(build())
    active = torch.from_numpy(np.random.default_rng(0).random(60000) < 0.8)
    return save(model, workdir() / "tiny.pt", example_active=active)


@functools.cache
def package() -> Path:
    """The exported package of :func:`checkpoint` (calibration, ONNX, golden vectors)."""
    from model_export.cli import main

    out = workdir() / "pkg"
    rc = main(
        [
            "--checkpoint",
            str(checkpoint()),
            "--output",
            str(out),
            "--calib-images",
            "256",
            "--golden-samples",
            "3",
        ]
    )
    assert rc == 0
    return out


def quick_export_args(ckpt: Path, out: Path, calib_images: int = 16) -> list[str]:
    """`trilevel export` arguments for a fast package: no ONNX, no golden vectors."""
    return ["--checkpoint", str(ckpt), "--output", str(out), "--no-onnx", "--golden-samples", "0",
            "--calib-images", str(calib_images)]  # fmt: skip
