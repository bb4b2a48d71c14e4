"""Checks a training run makes before it starts, and the one it makes while it runs.

Each raises an error whose message is the one line the CLI prints: a bad setting is found
before the first step, not after an epoch, and a diverging run stops at once with its last
good checkpoint kept.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

import torch

from . import distributed as dist_utils

# Files of a run folder (trilevel.train writes them); --no-resume sets them aside.
RUN_FILES = ("last.pt", "best.pt", "log.csv", "log.json", "curves.png", "metrics.json", "tensorboard")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


def prepare_output(output: str | Path) -> Path:
    """Create the run folder and prove it writable; ValueError if it is a file, lies under one
    or cannot be written."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--output {output} lies under {parent}, which is a file")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--output {output} cannot be written ({e.strerror or e})") from None
    return out


def set_aside_previous_run(out: Path) -> Path | None:
    """Move an earlier run's files in ``out`` into ``out/replaced-<time>/`` (for --no-resume).

    Returns the folder they went to, or None when there was no earlier run.
    """
    present = [out / name for name in RUN_FILES if (out / name).exists()]
    if not present:
        return None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = out / f"replaced-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = out / f"replaced-{stamp}-{n}"
    aside.mkdir()
    for p in present:
        os.replace(p, aside / p.name)
    return aside


def check_model_input(img_size: int, patch_size: int) -> None:
    """ValueError unless the image is cut into whole patches (timm would crop silently)."""
    if img_size < patch_size or img_size % patch_size:
        raise ValueError(
            f"img-size {img_size} is not a positive multiple of the model's patch size {patch_size}"
        )


def check_classes(num_classes: int | None, dataset_classes: int) -> int:
    """The model's class count: the dataset's unless --num-classes asks for more."""
    if dataset_classes < 2:
        raise ValueError(f"the dataset has {dataset_classes} class; training needs at least 2")
    if num_classes is not None and num_classes < dataset_classes:
        raise ValueError(f"num-classes {num_classes} is below the dataset's {dataset_classes} classes")
    return num_classes or dataset_classes


def check_finite_loss(loss_sum: torch.Tensor, epoch: int, step: int, lr: float) -> None:
    """NonFiniteLoss when the summed loss of the epoch so far is NaN or infinite on any rank.

    One flag per check, summed over ranks, so every rank stops at the same step.
    """
    bad = dist_utils.all_reduce_sum((~torch.isfinite(loss_sum)).float())
    if float(bad) > 0:
        raise NonFiniteLoss(
            f"the training loss became non-finite in epoch {epoch + 1} by step {step} "
            f"(peak learning rate {lr:.3g}); stopped, last.pt keeps the last good epoch"
        )
