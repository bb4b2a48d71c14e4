"""Optional TensorBoard scalars beside log.csv / log.json, written only when tensorboard is installed."""

from __future__ import annotations

from pathlib import Path


class TensorBoardLog:
    """One scalar per number of each epoch's log row, under output/tensorboard; a no-op
    without the tensorboard package (it is not a dependency of the project)."""

    def __init__(self, output: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
        else:
            self.writer = SummaryWriter(str(Path(output) / "tensorboard"))

    def log(self, row: dict) -> None:
        if self.writer is None:
            return
        for name, value in row.items():
            if name != "epoch" and type(value) in (int, float):
                self.writer.add_scalar(name, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
