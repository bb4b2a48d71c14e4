"""The DeiT recipe through timm: optimizer, LR schedule, mixup and loss, keep-ratio warm-up."""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from .config import TrainConfig
from .schedule import KeepRatioSchedule, paper_warmup


def peak_lr(cfg: TrainConfig, global_batch: int) -> float:
    return cfg.lr if cfg.lr is not None else 5e-4 * global_batch / 512  # DeiT's linear scaling


def optimizer_and_schedule(model, cfg: TrainConfig, lr: float, steps_per_epoch: list[int], device):
    """AdamW and a per-step cosine sized by the steps the run will actually take (one entry
    of ``steps_per_epoch`` per epoch), so it reaches ``min_lr`` at the run's last step."""
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel, not one per tensor
    optimizer = create_optimizer_v2(model, "adamw", lr=lr, weight_decay=cfg.weight_decay, **fused)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=sum(steps_per_epoch),
        lr_min=cfg.min_lr,
        warmup_t=round(cfg.warmup_epochs * steps_per_epoch[0]),
        warmup_lr_init=1e-6,
        t_in_epochs=False,
    )
    return optimizer, scheduler


def mixup_and_loss(cfg: TrainConfig, num_classes: int) -> tuple[Mixup | None, torch.nn.Module]:
    """timm's Mixup/CutMix (None when both are off) and the matching loss."""
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            label_smoothing=cfg.smoothing,
            num_classes=num_classes,
        )
        return mixup, SoftTargetCrossEntropy()
    return None, LabelSmoothingCrossEntropy(cfg.smoothing)


def keep_ratio_schedules(cfg: TrainConfig) -> tuple[KeepRatioSchedule, KeepRatioSchedule]:
    """(token, attention) keep-ratio warm-ups: the paper's window unless given; a staircase of
    3 steps when compiled (a few graphs), the exact cosine otherwise."""
    start, end = paper_warmup(cfg.epochs)
    start = cfg.warmup_start if cfg.warmup_start is not None else start
    end = cfg.warmup_end if cfg.warmup_end is not None else end
    levels = cfg.ratio_levels if cfg.ratio_levels is not None else (3 if cfg.compile else 0)
    return KeepRatioSchedule(cfg.token_keep, start, end, levels), KeepRatioSchedule(
        cfg.attn_keep, start, end, levels
    )
