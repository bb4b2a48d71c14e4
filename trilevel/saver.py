"""last.pt after every epoch, best.pt beside it whenever the test top-1 improves (timm's CheckpointSaver)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .checkpoint import save_checkpoint


class CheckpointSaver:
    def __init__(self, output: str | Path):
        self.last = Path(output) / "last.pt"
        self.best = Path(output) / "best.pt"

    def save(self, state: dict, history: list[dict]) -> None:
        """Write last.pt; copy it to best.pt when the newest row's score beats every earlier one.

        The score is the EMA weights' top-1 when the run keeps an EMA, else the model's.
        """
        save_checkpoint(self.last, state)
        scores = [score(r) for r in history]
        newest, earlier = scores[-1], [s for s in scores[:-1] if s is not None]
        if newest is not None and (not earlier or newest > max(earlier)):
            tmp = self.best.with_suffix(".pt.tmp")
            shutil.copyfile(self.last, tmp)
            tmp.replace(self.best)


def score(row: dict) -> float | None:
    return row.get("top1_ema", row.get("top1"))
