"""One dataclass holds a training run's settings; the CLI fills it, checkpoints store it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

# Tri-Level/r presets: the paper's main table uses keep ratio r at every level; the
# attention level keeps 0.3 of the connections in the paper's DeiT-T setting.
PRESETS = {
    "dense": dict(token_keep=1.0, attn_keep=1.0, example_keep=1.0),
    "trilevel-0.9": dict(token_keep=0.9, attn_keep=0.3, example_keep=0.9),
    "trilevel-0.8": dict(token_keep=0.8, attn_keep=0.3, example_keep=0.8),
    "trilevel-0.7": dict(token_keep=0.7, attn_keep=0.3, example_keep=0.7),
}


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

    def apply_preset(self) -> None:
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
            for k, v in PRESETS[self.preset].items():
                setattr(self, k, v)

    def validate(self) -> None:
        for name in ("token_keep", "attn_keep", "example_keep"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v <= 1.0 and math.isfinite(v)):
                raise ValueError(f"{name.replace('_', '-')} must be in (0, 1], got {v}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch-size must be at least 1, got {self.batch_size}")
        if self.example_method not in ("trilevel", "random", "forgetting"):
            raise ValueError(f"unknown example method {self.example_method!r}")

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
