"""Per-epoch logs (CSV and JSON) and the accuracy / loss curves against wall time."""

from __future__ import annotations

import csv
import json
from pathlib import Path

SCALAR_TYPES = (int, float, str, type(None))


def write_log(out: Path, history: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.json").write_text(json.dumps(history, indent=1) + "\n")
    columns: list[str] = []
    for row in history:
        columns += [k for k, v in row.items() if _is_scalar(v) and k not in columns]
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def _is_scalar(v) -> bool:
    return isinstance(v, SCALAR_TYPES) or (isinstance(v, list) and len(v) == 1)


def write_curves(out: Path, history: list[dict]) -> Path:
    """curves.png: test top-1 and training loss against wall-clock time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wall = [r["wall_time_s"] / 60 for r in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    evals = [(w, r["top1"]) for w, r in zip(wall, history) if r.get("top1") is not None]
    if evals:
        ax_acc.plot(*zip(*evals), marker="o")
    ax_acc.set(xlabel="wall time (min)", ylabel="test top-1 (%)", title="accuracy")
    ax_loss.plot(wall, [r["train_loss"] for r in history], marker="o", color="tab:red")
    ax_loss.set(xlabel="wall time (min)", ylabel="training loss", title="loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
