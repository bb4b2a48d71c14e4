"""The global random streams (torch, CUDA, numpy, python): seeded per rank, saved, restored.

Each DDP rank seeds them with ``seed + rank``, so drop-path masks, mixup and the GPU
augmentation differ between ranks; draws that every rank must share (the epoch order, the
example subset) come from generators of their own seeded by the run's seed alone.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture() -> dict:
    """This process's random state as tensors and plain data (checkpoints hold no numpy objects)."""
    s = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {
            "bit_generator": s["bit_generator"],
            "key": torch.from_numpy(s["state"]["key"].astype(np.int64)),
            "pos": int(s["state"]["pos"]),
            "has_gauss": int(s["has_gauss"]),
            "gauss": float(s["gauss"]),
        },
        "python": random.getstate(),
    }


def restore(state: dict) -> None:
    """Set the streams from :func:`capture`'s dict."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    random.setstate(state["python"])
