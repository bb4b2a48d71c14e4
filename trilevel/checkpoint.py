"""Checkpoints: written atomically, read with one clear error when they are not usable.

A checkpoint is a dict saved with torch.save:
  version        CHECKPOINT_VERSION
  config         TrainConfig.to_dict()
  model_spec     {"timm_name": str, "kwargs": dict}: rebuilds the architecture
  trilevel       {"token_keep", "attn_keep", "locations", "stat_layer"}: final ratios
  model          state_dict of the unwrapped, uncompiled model (timm's own keys)
  optimizer, scheduler, scaler, epoch (next epoch to run), step, rng,
  ratio_schedule, example_selector (state dict or None), history (per-epoch log rows)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import models
from .config import TrainConfig
from .patch import patch

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a trilevel checkpoint of version {CHECKPOINT_VERSION}"
        )
    missing = [k for k in ("config", "model_spec", "trilevel", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return ckpt


def build_model(ckpt: dict):
    """The patched model of a checkpoint, at its final keep ratios, in eval mode, on the CPU."""
    spec = ckpt["model_spec"]
    model = models.create(spec["timm_name"], dict(spec["kwargs"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit {spec['timm_name']}: {e}") from e
    tl = ckpt["trilevel"]
    patch(model, tl["token_keep"], tl["attn_keep"], tuple(tl["locations"]), tl.get("stat_layer"))
    return model.eval()


def load_model(path: str | Path):
    """(patched model, TrainConfig, checkpoint dict) from a checkpoint file."""
    ckpt = load_checkpoint(path)
    return build_model(ckpt), TrainConfig.from_dict(ckpt["config"]), ckpt
