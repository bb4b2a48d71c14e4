"""Input images on the host, numpy only: Fashion-MNIST's idx files and the package's normalisation.

The training side reads the same files with torch (trilevel/data.py); this reader gives the
same uint8 arrays without it. :func:`quantize_images` applies the manifest's ``input``
section exactly as the exporter did (float32, pixel / (1 / scale), minus mean, over std) and
rounds to the input format, as ``ReferenceModel.quantize_input`` does.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from . import fixedpoint as fp

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist installs it
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class DatasetError(ValueError):
    """Image files that are missing or not what they claim to be."""


def read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format: zero bytes, type 0x08 (uint8), ndim, big-endian sizes, data)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of uint8 data")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated (header)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} holds {data.size} bytes of data for shape {dims}")
    return data.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{stem}(.gz) not found in {root}")


def load_idx_split(
    source: str | Path = "fashion-mnist", split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, H, W), labels int64 (N,)) of an MNIST-format split.

    source: ``fashion-mnist`` ($FASHION_MNIST_DIR, else the Debian package's folder) or a
    folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
    """
    if str(source) == "fashion-mnist":
        source = os.environ.get("FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    root = Path(source)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    prefix = SPLIT_PREFIX[split]
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{root}: images {images.shape} and labels {labels.shape} do not pair up")
    return images[:, None], labels.astype(np.int64)


def normalize(images_u8: np.ndarray, input_spec: dict) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (pixel / (1 / scale) - mean) / std, per channel (as the exporter)."""
    x = np.asarray(images_u8).astype(np.float32) / np.float32(1.0 / input_spec["scale"])
    mean = np.asarray(input_spec["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(input_spec["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


def quantize_images(images_u8: np.ndarray, manifest: dict) -> np.ndarray:
    """uint8 (N, C, H, W) -> int64 at the manifest's input format: what the engine reads."""
    spec = manifest["input"]
    return fp.quantize(normalize(images_u8, spec), spec["frac_bits"])
