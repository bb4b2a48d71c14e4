"""One dataclass holds a training run's settings; the CLI fills it, checkpoints store it."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields
from types import UnionType as _UnionType

# Tri-Level/r presets: the paper's main table uses keep ratio r at every level; the
# attention level keeps 0.3 of the connections in the paper's DeiT-T setting. The rest
# are ablations: each level alone at 0.7 (the attention level at its 0.3), and the token
# and attention levels without the example level.
PRESETS = {
    "dense": dict(token_keep=1.0, attn_keep=1.0, example_keep=1.0),
    "trilevel-0.9": dict(token_keep=0.9, attn_keep=0.3, example_keep=0.9),
    "trilevel-0.8": dict(token_keep=0.8, attn_keep=0.3, example_keep=0.8),
    "trilevel-0.7": dict(token_keep=0.7, attn_keep=0.3, example_keep=0.7),
    "example-0.7": dict(token_keep=1.0, attn_keep=1.0, example_keep=0.7),
    "token-0.7": dict(token_keep=0.7, attn_keep=1.0, example_keep=1.0),
    "token-0.7+attn-0.3": dict(token_keep=0.7, attn_keep=0.3, example_keep=1.0),
    "attn-0.7": dict(token_keep=1.0, attn_keep=0.3, example_keep=1.0),
}


def preset_defaults(preset: str | None) -> dict:
    """The settings ``preset`` gives (empty for None); ValueError for an unknown name."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def opt(default, help: str):
    """A TrainConfig field with its ``trilevel train --help`` text (the one place it is written)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # Model and data.
    model: str = opt("fmnist-tiny", "timm ViT name (e.g. deit_tiny_patch16_224) or the preset fmnist-tiny")
    dataset: str = opt("fashion-mnist", "fashion-mnist, synthetic, or the root of an ImageFolder tree")
    data_dir: str | None = opt(
        None, "Fashion-MNIST folder; default: $FASHION_MNIST_DIR or the Debian package's"
    )
    img_size: int | None = opt(None, "input size the model is built for; default: the model's own")
    in_chans: int | None = opt(None, "input channels; default: 1 for fashion-mnist/synthetic presets, else 3")
    num_classes: int | None = opt(None, "classes of the head; default: from the dataset")
    synthetic_size: int = opt(2048, "training examples of the synthetic dataset (its test set is a quarter)")
    data_on_device: bool = opt(True, "keep in-memory datasets on the device and augment there")
    workers: int = opt(4, "DataLoader worker processes (ImageFolder datasets)")
    # Recipe (DeiT, through timm).
    epochs: int = opt(10, "training epochs")
    batch_size: int = opt(256, "images per step on each rank")
    lr: float | None = opt(None, "peak learning rate; default: 5e-4 * global batch / 512 (DeiT)")
    weight_decay: float = opt(0.05, "AdamW weight decay")
    warmup_epochs: float = opt(1.0, "linear learning-rate warm-up, in epochs")
    min_lr: float = opt(1e-5, "learning rate at the end of the cosine")
    mixup: float = opt(0.8, "mixup alpha (0: off)")
    cutmix: float = opt(1.0, "cutmix alpha (0: off)")
    smoothing: float = opt(0.1, "label smoothing")
    drop_path: float = opt(0.1, "stochastic depth rate")
    rand_augment: str = opt(
        "rand-m9-mstd0.5-inc1", "timm RandAugment policy, ImageFolder only (docs/training.md)"
    )
    reprob: float = opt(0.25, "random erasing probability (ImageFolder only)")
    model_ema: bool = opt(
        False, "keep timm's ModelEmaV3 of the weights; evaluated and saved beside the model"
    )
    model_ema_decay: float = opt(0.9998, "EMA decay per step")
    clip_grad: float | None = opt(None, "clip the gradient norm to this value (default: no clipping)")
    initial_checkpoint: str | None = opt(
        None, "start from this trilevel checkpoint's weights (fine-tuning; a head of another size is new)"
    )
    # Token and attention levels.
    token_keep: float = opt(1.0, "token keep ratio R_T of each TA-Selector")
    attn_keep: float = opt(1.0, "attention keep ratio R_A (connections kept per token)")
    locations: tuple[int, ...] | None = opt(
        None, "block indices holding a TA-Selector; default: 3 6 9 for 12 blocks"
    )
    warmup_start: float | None = opt(
        None, "epoch the keep-ratio warm-up starts; default: the paper's 10/300 of the run"
    )
    warmup_end: float | None = opt(
        None, "epoch the keep-ratio warm-up ends; default: the paper's 110/300 of the run"
    )
    ratio_levels: int | None = opt(
        None, "steps of the keep-ratio warm-up staircase; default: 3 when compiled, else 0 (exact cosine)"
    )
    # Example level.
    example_keep: float = opt(1.0, "fraction of the training set trained on (example level)")
    example_method: str = opt("trilevel", "trilevel, random, or forgetting (two-phase ablation)")
    example_updates: int | None = opt(None, "subset updates; default: 5 for keep <= 0.8, else 3 (paper)")
    example_first_update: float | None = opt(
        None, "epoch of the first subset update; default: 30/300 of the run"
    )
    example_update_every: float | None = opt(
        None, "epochs between subset updates; default: 30/300 of the run"
    )
    example_stat_layer: int | None = opt(
        None, "block whose attention variance ranks examples; default: the last"
    )
    # Machinery.
    compile: bool = opt(False, "torch.compile the model (fixed for a run: it chooses the warm-up staircase)")
    compile_mode: str = opt(
        "reduce-overhead", "torch.compile mode; CUDA graphs, as the small ViTs are launch-bound"
    )
    amp: bool = opt(True, "bf16 autocast on CUDA")
    seed: int = opt(0, "seed of the run; rank r seeds its own random streams with seed + r")
    output: str = opt("runs/default", "run folder: logs, checkpoints, metrics.json, curves.png")
    resume: bool = opt(True, "continue from output/last.pt when it exists")
    eval_every: int = opt(1, "evaluate every this many epochs (and after the last)")
    max_steps_per_epoch: int | None = opt(None, "cap on the steps of an epoch, for smoke tests")
    preset: str | None = opt(None, f"keep-ratio defaults, overridden by explicit flags: {', '.join(PRESETS)}")
    extra: dict = opt({}, "free-form notes stored with the run")

    @classmethod
    def from_preset(cls, preset: str | None = None, **explicit) -> TrainConfig:
        """A config whose keep ratios come from ``preset`` unless ``explicit`` names them:
        a preset sets defaults, it never overrides a setting given on purpose."""
        return cls(preset=preset, **{**preset_defaults(preset), **explicit})

    def validate(self) -> None:
        """ValueError naming the first setting of the wrong type or out of range (before any work)."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name, (lo, hi, lo_open) in _RANGES.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not math.isfinite(v) or v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
                bounds = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else f'{hi}]'}"
                raise ValueError(f"{_flag(name)} must be in {bounds}, got {v}")
        if self.locations is not None and len(set(self.locations)) != len(self.locations):
            raise ValueError(f"locations must be distinct block indices, got {list(self.locations)}")
        preset_defaults(self.preset)  # an unknown name is refused here
        if self.example_method not in ("trilevel", "random", "forgetting"):
            raise ValueError(f"unknown example method {self.example_method!r}")
        if None not in (self.warmup_start, self.warmup_end) and self.warmup_start > self.warmup_end:
            raise ValueError(f"warmup-start {self.warmup_start} is after warmup-end {self.warmup_end}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["locations"] = list(self.locations) if self.locations is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if cfg.locations is not None:
            cfg.locations = tuple(cfg.locations)
        return cfg


# name -> (lowest, highest or None, lowest excluded): every number a run reads
_RANGES = {
    "token_keep": (0.0, 1.0, True),
    "attn_keep": (0.0, 1.0, True),
    "example_keep": (0.0, 1.0, True),
    "img_size": (1, None, False),
    "in_chans": (1, None, False),
    "num_classes": (2, None, False),
    "synthetic_size": (1, None, False),
    "workers": (0, None, False),
    "epochs": (1, None, False),
    "batch_size": (1, None, False),
    "lr": (0.0, None, True),
    "model_ema_decay": (0.0, 1.0, False),
    "clip_grad": (0.0, None, True),
    "weight_decay": (0.0, None, False),
    "warmup_epochs": (0.0, None, False),
    "min_lr": (0.0, None, False),
    "mixup": (0.0, None, False),
    "cutmix": (0.0, None, False),
    "smoothing": (0.0, 0.99, False),
    "drop_path": (0.0, 0.99, False),
    "reprob": (0.0, 1.0, False),
    "warmup_start": (0.0, None, False),
    "warmup_end": (0.0, None, False),
    "ratio_levels": (0, None, False),
    "example_updates": (0, None, False),
    "example_first_update": (0.0, None, False),
    "example_update_every": (0.0, None, True),
    "example_stat_layer": (0, None, False),
    "seed": (0, 2**32 - 1, False),
    "eval_every": (1, None, False),
    "max_steps_per_epoch": (1, None, False),
}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _check_type(name: str, value, hint) -> None:
    """ValueError unless ``value`` fits the field's type hint (an int is a fine float, a bool no int)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    for t in options:
        base = typing.get_origin(t) or t
        if t is type(None) and value is None:
            return
        if base is float and type(value) in (int, float):
            return
        if base is int and type(value) is int:
            return
        if base in (str, bool, dict) and type(value) is base:
            return
        if base is tuple and isinstance(value, (tuple, list)) and all(type(x) is int for x in value):
            return
    raise ValueError(f"{_flag(name)} has the wrong type: {value!r}")
