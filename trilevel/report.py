"""Per-epoch logs (CSV and JSON) and the accuracy / loss curves against wall time."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

SCALAR_TYPES = (int, float, str, type(None))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write through a temporary file and a rename: a full disk or a kill leaves the old file
    whole and no temporary file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_log(out: Path, history: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "log.json", json.dumps(history, indent=1) + "\n")
    columns: list[str] = []
    for row in history:
        columns += [k for k, v in row.items() if _is_scalar(v) and k not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_atomic(out / "log.csv", text.getvalue())


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
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, png.getvalue())
    return path
