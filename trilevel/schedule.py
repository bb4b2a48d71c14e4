"""Keep-ratio warm-up: R stays 1.0, then follows a cosine down to its target, then stays.

Same shape as EViT and the paper (1.0 for epochs 0-9, cosine over epochs 10-109 of 300),
stepped per iteration with a fractional epoch. ``levels`` > 0 holds the ratio on a
staircase of that many steps under the cosine (each step taken at the cosine's value where
the step starts, so the ratio never undershoots it): a compiled model then sees levels + 1
token counts and compiles levels + 1 graphs instead of one per iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class KeepRatioSchedule:
    target: float
    start_epoch: float = 0.0
    end_epoch: float = 0.0
    levels: int = 0

    def __post_init__(self):
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"keep ratio target must be in (0, 1], got {self.target}")
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"warm-up ends (epoch {self.end_epoch}) before it starts ({self.start_epoch})")

    def __call__(self, epoch: float) -> float:
        """Keep ratio at a fractional epoch (epoch + step / steps_per_epoch)."""
        if epoch < self.start_epoch:
            return 1.0
        if epoch >= self.end_epoch:
            return self.target
        t = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        if self.levels > 0:
            t = math.floor(t * self.levels) / self.levels
        return self.target + (1.0 - self.target) * 0.5 * (1.0 + math.cos(math.pi * t))


def paper_warmup(epochs: int) -> tuple[float, float]:
    """The paper's warm-up window (epochs 10-110 of 300) scaled to a run of ``epochs``."""
    return 10 / 300 * epochs, 110 / 300 * epochs
