"""``trilevel viz``: pictures of what the example and token levels remove.

- ``forgotten.png`` / ``unforgettable.png`` (the paper's Figure 3): the training examples
  with the most forgetting events over the run, and examples learned and never forgotten,
  in the order the example selector would drop them (lowest mean attention variance first).
  Both come from the example-selector state in the checkpoint; statistics other than the
  whole-run forgetting count cover the epochs since the last subset update.
- ``pruned_patches.png`` (Figure 4): a few test images, then the same images with the
  patches each TA-Selector stage dropped tinted blue.

Exit status: 0 when all three files were written; 1 when the checkpoint holds no
example-selector state (``pruned_patches.png`` is still written, it needs only the model);
2 when the checkpoint or the dataset cannot be read (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_model
from .config import TrainConfig
from .data import (
    IN_MEMORY,
    DatasetError,
    InMemoryDataset,
    align_classes,
    build_data,
    image_folder_dirs,
    normalization,
)
from .device_loader import DeviceLoader
from .example_selector import ExampleSelector

FASHION_MNIST_CLASSES = "T-shirt Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Boot".split()

_TINT = np.array([0.55, 0.75, 0.95])  # dropped patches: tinted, so white kept patches stay visible


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trilevel viz", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a trilevel checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--output", required=True, help="folder for the PNG files")
    p.add_argument("--count", type=int, default=16, help="examples per example-level figure")
    p.add_argument("--images", type=int, default=4, help="test images in pruned_patches.png")
    args = p.parse_args(argv)
    if args.count < 1 or args.images < 1:
        p.error("--count and --images must be at least 1")
    try:
        return _run(args)
    except (CheckpointError, DatasetError, OSError) as e:
        print(f"trilevel viz: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--output {out} is a file, not a folder")
    model, cfg, ckpt = load_model(args.checkpoint)
    img_size = model.patch_embed.img_size[0]
    in_chans = model.patch_embed.proj.in_channels
    data = _Data(cfg, img_size, in_chans)
    test = data.load("test", range(args.images))
    state = ckpt.get("example_selector")
    sel = None
    if state is not None:
        try:
            sel = ExampleSelector.from_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(
                f"{args.checkpoint}: unusable example-selector state ({type(e).__name__}: {e})"
            ) from None
    out.mkdir(parents=True, exist_ok=True)
    loader = DeviceLoader(test, len(test), img_size, in_chans, torch.device("cpu"), train=False)
    x = loader.transform(test.images)  # (B, C, S, S) normalised model input
    pruned_patches_figure(model, x, _display(x * loader.std + loader.mean), out / "pruned_patches.png")

    if sel is None:
        print(
            f"trilevel viz: error: {args.checkpoint} holds no example-selector state (trained with "
            "example keep 1.0?); wrote pruned_patches.png only",
            file=sys.stderr,
        )
        return 1
    if sel.num_examples != data.num_train:
        print(
            f"trilevel viz: error: the example selector covers {sel.num_examples} examples but "
            f"dataset {cfg.dataset!r} has {data.num_train}; wrote pruned_patches.png only",
            file=sys.stderr,
        )
        return 1
    forget_total = sel.statistics()["forget_total"]
    for name, pick in (("forgotten", most_forgotten), ("unforgettable", unforgettable)):
        idx = pick(sel, args.count).tolist()
        ds = data.load("train", idx)
        labels = ds.labels.tolist()
        titles = [
            f"{data.class_name(y)}\n#{i} f={int(forget_total[i])}" for i, y in zip(idx, labels, strict=True)
        ]
        heading = f"{name} training examples (forgetting events over the run)"
        example_figure(_display(ds.images.float() / 255), titles, heading, out / f"{name}.png")
    print(f"trilevel viz: wrote forgotten.png, unforgettable.png, pruned_patches.png to {out}")
    return 0


def most_forgotten(sel: ExampleSelector, count: int) -> torch.Tensor:
    """int64 (<= count,): examples forgotten at least once, most forgetting events first."""
    total = sel.statistics()["forget_total"]
    cand = (total > 0).nonzero().squeeze(1)
    return cand[(-total[cand]).argsort(stable=True)][:count]


def unforgettable(sel: ExampleSelector, count: int) -> torch.Tensor:
    """int64 (<= count,): examples right since the last update and never forgotten in the run,
    in the selector's removal order (the least informative first)."""
    st = sel.statistics()
    cand = (st["learned"] & (st["forget_total"] == 0)).nonzero().squeeze(1)
    return sel.ranking(cand)[:count]


def pruned_patches_figure(model, x: torch.Tensor, shown: np.ndarray, path: Path) -> None:
    """Each image, then one panel per TA-Selector stage with the dropped patches tinted.

    x: (B, C, S, S) normalised model input; shown: float (B, S, S, 3) the same images for
    display. The kept indices are the model's own record of this forward.
    """
    model.trilevel.record = True
    with torch.no_grad():
        model(x)
    keep = model.trilevel.last_keep_idx  # per stage: (B, n_keep) original patch ids
    gh, gw = model.patch_embed.grid_size
    B, S = x.shape[0], x.shape[-1]  # S = grid * patch size
    panels, titles = [shown], ["input"]
    for stage, idx in enumerate(keep):
        kept = kept_pixels(idx.cpu(), (gh, gw), S)
        washed = np.where(kept.unsqueeze(-1).numpy(), shown, 0.3 * shown + 0.7 * _TINT)
        panels.append(washed)
        block = model.trilevel.locations[stage]
        titles.append(f"block {block}: {idx.shape[1]}/{gh * gw}")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 * len(panels), 1.7 * B + 0.4), layout="constrained")
    axes = fig.subplots(B, len(panels), squeeze=False)
    for r in range(B):
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel[r], interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.suptitle("patches kept per TA-Selector stage" if keep else "no TA-Selector stages", fontsize=9)
    fig.savefig(path, dpi=100)


def kept_pixels(idx: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """bool (B, size, size): pixels of the patches listed in idx (B, n_keep), row-major ids on grid."""
    gh, gw = grid
    kept = torch.zeros(idx.shape[0], gh * gw, dtype=torch.bool).scatter_(1, idx, True).view(-1, gh, gw)
    return kept.repeat_interleave(size // gh, 1).repeat_interleave(size // gw, 2)


def example_figure(images: np.ndarray, titles: list[str], heading: str, path: Path) -> None:
    """images: float (k, H, W, 3) in [0, 1], shown on a grid of up to 8 columns."""
    from matplotlib.figure import Figure

    k = len(images)
    cols = max(1, min(8, k))
    rows = max(1, -(-k // cols))
    fig = Figure(figsize=(1.4 * cols, 1.7 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < k:
            ax.imshow(images[i], interpolation="nearest")
            ax.set_title(titles[i], fontsize=7)
    if k == 0:
        axes[0, 0].text(0.5, 0.5, "no such examples\nin the recorded statistics", ha="center", va="center")
    fig.suptitle(heading, fontsize=9)
    fig.savefig(path, dpi=100)


def _display(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in about [0, 1] -> float (B, H, W, 3) for imshow (grey or first 3 channels)."""
    x = x.clamp(0, 1)
    x = x[:, :1].expand(-1, 3, -1, -1) if x.shape[1] != 3 else x
    return x.permute(0, 2, 3, 1).numpy()


class _Data:
    """The run's train and test images, loaded as small in-memory sets on request.

    In-memory datasets come from the training code's ``build_data``, so indices match the
    selector's. ImageFolder trees: images are opened one by one and resized to the model
    input; without a val/ folder the test images come from the training folder.
    """

    def __init__(self, cfg: TrainConfig, img_size: int, in_chans: int):
        self.cfg, self.img_size, self.in_chans = cfg, img_size, in_chans
        self.classes: list[str] | None = None
        if cfg.dataset in IN_MEMORY:  # the training run's own datasets, in its index order
            self.train, self.test = build_data(cfg)[:2]
            if cfg.dataset == "fashion-mnist":
                self.classes = list(FASHION_MNIST_CLASSES)
        else:
            self.train, self.test = self._image_folder(cfg.dataset)
        self.num_train = len(self.train)

    def class_name(self, y: int) -> str:
        return self.classes[y] if self.classes else f"class {y}"

    def load(self, split: str, indices) -> InMemoryDataset:
        ds = self.train if split == "train" else self.test
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        idx = idx[idx < len(ds)]
        if isinstance(ds, InMemoryDataset):
            return InMemoryDataset(ds.images[idx], ds.labels[idx], ds.num_classes, ds.mean, ds.std)
        images = torch.stack([self._open(ds.samples[i][0]) for i in idx.tolist()]) if len(idx) else None
        labels = torch.tensor([ds.samples[i][1] for i in idx.tolist()], dtype=torch.int64)
        if images is None:
            images = torch.zeros(0, self.in_chans, self.img_size, self.img_size, dtype=torch.uint8)
        mean, std = normalization(self.in_chans)
        return InMemoryDataset(images, labels, len(ds.classes), mean, std)

    def _image_folder(self, root: str):
        from torchvision.datasets import ImageFolder

        train_dir, val_dir = image_folder_dirs(root)
        val_dir = val_dir or train_dir  # no val/: the pictures show training images
        try:
            train, test = ImageFolder(str(train_dir)), ImageFolder(str(val_dir))
        except (FileNotFoundError, RuntimeError) as e:
            raise DatasetError(f"{root} is not an ImageFolder tree: {e}") from e
        align_classes(train, test, val_dir)
        self.classes = train.classes
        return train, test

    def _open(self, file: str) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(file) as img:
                img = img.convert("RGB" if self.in_chans == 3 else "L").resize((self.img_size, self.img_size))
                a = np.asarray(img, dtype=np.uint8)
        except Exception as e:  # PIL raises several types for broken files; name the file
            raise DatasetError(f"cannot read image {file} ({type(e).__name__}: {e})") from None
        return torch.from_numpy(a.copy()).view(self.img_size, self.img_size, -1).permute(2, 0, 1)
