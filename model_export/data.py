"""Input images for calibration, golden vectors and agreement checks.

The dataset and its normalisation come from :mod:`trilevel.data` (the one place they are
defined); the normalisation is written into the package manifest so the host can apply it
without torch.
"""

from __future__ import annotations

import numpy as np
import torch

from trilevel import data as tdata


def load_split(split: str, data_dir: str | None = None):
    """Fashion-MNIST ``split`` ('train' or 'test') as an InMemoryDataset (uint8 (N, 1, 28, 28))."""
    train, test = tdata.load_fashion_mnist(data_dir)
    return {"train": train, "test": test}[split]


def normalize(images_u8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (n, C, H, W) -> float32 (n, C, H, W): (x / 255 - mean) / std."""
    x = images_u8.float() / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def pick(ds, n: int, seed: int = 0) -> np.ndarray:
    """n distinct indices of ``ds`` drawn with a fixed seed (calibration and golden samples)."""
    return np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False))


def normalization(ds) -> dict:
    """The manifest's input normalisation: x_float = (pixel / 255 - mean) / std."""
    return {"scale": 1.0 / 255.0, "mean": list(ds.mean), "std": list(ds.std)}
