"""Datasets: Fashion-MNIST (the Debian package's idx files), synthetic, ImageFolder.

Small datasets are held in memory as uint8 tensors (see :mod:`trilevel.device_loader`);
ImageFolder trees go through a torch DataLoader with timm's transforms. Every training
sample comes with its dataset index, which the example-level selector needs.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

# The Debian package dataset-fashion-mnist installs the four idx files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DatasetError(ValueError):
    pass


@dataclass
class InMemoryDataset:
    """images: uint8 (N, C, H, W); labels: int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (the MNIST format: magic, dims, big-endian sizes, raw uint8)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an idx file of uint8 data")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: {data.size} bytes for shape {tuple(dims)}")
    return data.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"Fashion-MNIST file {stem}(.gz) not found in {root}")


def load_fashion_mnist(data_dir: str | None = None) -> tuple[InMemoryDataset, InMemoryDataset]:
    """(train 60k, test 10k) as uint8 (N, 1, 28, 28) tensors."""
    root = Path(data_dir or os.environ.get("FASHION_MNIST_DIR", FASHION_MNIST_DIR))
    if not root.is_dir():
        raise DatasetError(
            f"Fashion-MNIST folder {root} does not exist (install the Debian package "
            "dataset-fashion-mnist or pass --data-dir)"
        )
    splits = []
    for prefix in ("train", "t10k"):
        images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
        if len(images) != len(labels):
            raise DatasetError(f"{prefix}: {len(images)} images but {len(labels)} labels")
        splits.append(
            InMemoryDataset(
                torch.from_numpy(images.copy()).unsqueeze(1),
                torch.from_numpy(labels.astype(np.int64)),
                10,
                FASHION_MNIST_MEAN,
                FASHION_MNIST_STD,
            )
        )
    return splits[0], splits[1]


def make_synthetic(n: int, size: int = 28, num_classes: int = 10, seed: int = 0) -> InMemoryDataset:
    """A learnable toy set: class c is c + 1 horizontal stripes, with a random phase, on noise.

    Stripe counts survive the training augmentation (flip, shift, mild zoom), so the labels
    stay right after it.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    rows = torch.arange(size, dtype=torch.float32) / size  # (H,)
    phase = torch.rand(n, 1, generator=g)
    wave = torch.sin(2 * torch.pi * ((labels[:, None] + 1) * rows[None] + phase))  # (n, H)
    noise = torch.randn(n, size, size, generator=g) * 0.2
    images = (0.5 + 0.4 * wave[:, :, None] + noise).clamp(0, 1).mul(255).to(torch.uint8)
    return InMemoryDataset(images.unsqueeze(1), labels, num_classes, (0.5,), (0.25,))


class IndexedDataset(torch.utils.data.Dataset):
    """Wraps a dataset so each item is (image, label, index)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return x, y, i


IN_MEMORY = ("fashion-mnist", "synthetic")  # any other --dataset is the root of an ImageFolder tree


class Datasets(NamedTuple):
    """A run's data. train/test: InMemoryDataset (uint8 images) or torchvision ImageFolder
    (transformed float tensors); test is None for an ImageFolder tree without val/."""

    train: object
    test: object
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def build_data(cfg, img_size: int | None = None, in_chans: int | None = None) -> Datasets:
    """The datasets of a TrainConfig, in the index order the example selector uses.

    An ImageFolder tree is resized to the model's input, so it needs ``img_size`` and
    ``in_chans``; the in-memory sets keep their native size (the loader resizes on the device).
    """
    if cfg.dataset == "fashion-mnist":
        train, test = load_fashion_mnist(cfg.data_dir)
    elif cfg.dataset == "synthetic":
        train = make_synthetic(cfg.synthetic_size, seed=cfg.seed)
        test = make_synthetic(max(cfg.synthetic_size // 4, 64), seed=cfg.seed + 1)
    else:
        if img_size is None or in_chans is None:
            raise ValueError("an ImageFolder dataset needs the model's img_size and in_chans")
        return load_image_folder(cfg.dataset, img_size, in_chans, cfg)
    return Datasets(train, test, train.num_classes, train.images.shape[1], train.mean, train.std)


def normalization(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of an ImageFolder tree: ImageNet's for RGB, 0.5 otherwise."""
    return (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)


def image_folder_dirs(root: str | Path) -> tuple[Path, Path | None]:
    """(train folder, val folder or None) of an ImageNet-style tree: root/train/<class>/*,
    root/val/<class>/*. Without a train/ subfolder the root itself is the training set."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetError(f"dataset path {root} does not exist")
    train_dir = path / "train" if (path / "train").is_dir() else path
    return train_dir, path / "val" if (path / "val").is_dir() else None


def load_image_folder(root: str, img_size: int, in_chans: int, cfg) -> Datasets:
    """The tree's training set with DeiT's augmentation and its val/ set (or None), through
    timm's create_transform with DeiT's bicubic interpolation."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    train_dir, val_dir = image_folder_dirs(root)
    mean, std = normalization(in_chans)
    train_tf = create_transform(
        img_size,
        is_training=True,
        auto_augment=cfg.rand_augment or None,
        re_prob=cfg.reprob,
        interpolation="bicubic",
        mean=mean,
        std=std,
    )
    eval_tf = eval_transform(img_size, in_chans)
    loader = functools.partial(_open_image, in_chans=in_chans)
    try:
        train = ImageFolder(str(train_dir), transform=train_tf, loader=loader)
        val = ImageFolder(str(val_dir), transform=eval_tf, loader=loader) if val_dir else None
    except (FileNotFoundError, RuntimeError) as e:
        raise DatasetError(f"{root} is not an ImageFolder tree: {e}") from e
    if val is not None:
        align_classes(train, val, val_dir)
    return Datasets(train, val, len(train.classes), in_chans, mean, std)


def eval_transform(img_size: int, in_chans: int):
    """DeiT's evaluation transform (bicubic resize, centre crop, normalisation) through timm."""
    from timm.data import create_transform

    mean, std = normalization(in_chans)
    return create_transform(img_size, is_training=False, interpolation="bicubic", mean=mean, std=std)


def align_classes(train, val, val_dir) -> None:
    """Give ``val`` the labels of ``train``'s classes (ImageFolder numbers each tree's classes itself).

    A val/ tree with a subset of the training classes is relabelled; one with a class the
    training tree lacks is refused, since the model cannot be scored on it.
    """
    unknown = sorted(set(val.classes) - set(train.classes))
    if unknown:
        raise DatasetError(f"{val_dir} has classes that train/ lacks: {', '.join(unknown[:5])}")
    to_train = {i: train.class_to_idx[c] for i, c in enumerate(val.classes)}
    val.samples = [(p, to_train[y]) for p, y in val.samples]
    val.imgs, val.targets = val.samples, [y for _, y in val.samples]
    val.classes, val.class_to_idx = list(train.classes), dict(train.class_to_idx)


def _open_image(path: str, in_chans: int):
    from PIL import Image

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB" if in_chans == 3 else "L")
    except Exception as e:  # PIL raises several types for broken files; name the file
        raise DatasetError(f"cannot read image {path} ({type(e).__name__}: {e})") from None
