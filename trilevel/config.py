"""One dataclass holds a training run's settings; the CLI fills it, checkpoints store it."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields
from types import UnionType as _UnionType

# Tri-Level/r presets: the paper's main table uses keep ratio r at every level; the
# attention level keeps 0.3 of the connections in the paper's DeiT-T setting.
PRESETS = {
    "dense": dict(token_keep=1.0, attn_keep=1.0, example_keep=1.0),
    "trilevel-0.9": dict(token_keep=0.9, attn_keep=0.3, example_keep=0.9),
    "trilevel-0.8": dict(token_keep=0.8, attn_keep=0.3, example_keep=0.8),
    "trilevel-0.7": dict(token_keep=0.7, attn_keep=0.3, example_keep=0.7),
}


def preset_defaults(preset: str | None) -> dict:
    """The settings ``preset`` gives (empty for None); ValueError for an unknown name."""
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


@dataclass
class TrainConfig:
    # Model and data.
    model: str = "fmnist-tiny"  # preset name or timm model name
    dataset: str = "fashion-mnist"  # fashion-mnist | synthetic | path to an ImageFolder root
    data_dir: str | None = None  # fashion-mnist files; default: the Debian package's folder
    img_size: int | None = None  # default: the model's own input size
    in_chans: int | None = None  # default: 1 for fashion-mnist/synthetic presets, else 3
    num_classes: int | None = None  # default: from the dataset
    synthetic_size: int = 2048
    data_on_device: bool = True  # keep in-memory datasets on the device, augment there
    workers: int = 4
    # Recipe (DeiT, through timm).
    epochs: int = 10
    batch_size: int = 256
    lr: float | None = None  # default: 5e-4 * global batch / 512
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    drop_path: float = 0.1
    rand_augment: str = "rand-m9-mstd0.5-inc1"  # ImageFolder only; see docs/training.md
    reprob: float = 0.25  # random erasing probability (ImageFolder only)
    # Token and attention levels.
    token_keep: float = 1.0
    attn_keep: float = 1.0
    locations: tuple[int, ...] | None = None  # default: (3, 6, 9) for 12 blocks
    warmup_start: float | None = None  # keep-ratio warm-up window in epochs; default: the
    warmup_end: float | None = None  # paper's 10..110 of 300 scaled to the run
    ratio_levels: int | None = (
        None  # warm-up staircase steps; default: 3 when compiled, else 0 (exact cosine)
    )
    # Example level.
    example_keep: float = 1.0
    example_method: str = "trilevel"  # trilevel | random | forgetting (two-phase)
    example_updates: int | None = None  # default: 5 for keep <= 0.8, else 3 (paper)
    example_first_update: float | None = None  # epoch of the first update; default 30/300 of the run
    example_update_every: float | None = None  # epochs between updates; default 30/300 of the run
    example_stat_layer: int | None = None  # default: the last block
    # Machinery.
    compile: bool = False
    compile_mode: str = "reduce-overhead"  # CUDA graphs: the small ViTs are launch-bound otherwise
    amp: bool = True  # bf16 autocast on CUDA
    seed: int = 0
    output: str = "runs/default"
    resume: bool = True  # continue from output/last.pt when it exists
    eval_every: int = 1
    max_steps_per_epoch: int | None = None  # for smoke tests
    preset: str | None = None
    extra: dict = field(default_factory=dict)

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
