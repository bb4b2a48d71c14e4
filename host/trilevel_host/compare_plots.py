"""The charts of ``trilevel-host compare``: latency bars and the engine's cycles per op kind.

matplotlib is imported inside each function, so the host package imports without it (the
board image need not have it; ``compare --no-plots`` skips these).
"""

from __future__ import annotations

from pathlib import Path

KIND_ORDER = (
    "LINEAR",
    "ATTENTION",
    "LAYERNORM",
    "GELU",
    "ADD",
    "SELECT",
    "GATHER",
    "PATCHIFY",
    "LOAD_LUT",
    "NOP",
)


def _keep_label(keep: float) -> str:
    return "dense" if keep >= 1.0 else f"/{keep}"


def plot_latency(rows: list[dict], model_names: dict[str, str], path: Path) -> None:
    """Grouped bars (log scale): inference ms per image, and per-epoch training hours, per model and keep.

    rows: the table of :func:`trilevel_host.compare.build_rows`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    src = rows[0]["fpga_source"]
    gpu = rows[0]["gpu_name"]
    labels = [f"{model_names[r['model']]}\n{_keep_label(r['keep'])}" for r in rows]
    x = np.arange(len(rows))
    panels = [
        (
            "Inference latency per image (batch 1)",
            "ms",
            [
                (f"FPGA ({src})", "fpga_infer_ms"),
                ("ZCU102, paper", "paper_infer_ms"),
                (f"GPU {gpu}", "gpu_infer_ms"),
            ],
        ),
        (
            "Training time per ImageNet-1k epoch (per-sample steps)",
            "hours",
            [
                (f"FPGA ({src})", "fpga_epoch_h"),
                ("ZCU102, paper", "paper_epoch_h"),
                (f"GPU {gpu}, batch 1", "gpu_epoch_h_batch1"),
            ],
        ),
    ]
    colors = ("tab:blue", "tab:orange", "tab:green")
    fig, axes = plt.subplots(2, 1, figsize=(12, 8.5), constrained_layout=True)
    for ax, (title, unit, series) in zip(axes, panels, strict=True):
        width = 0.8 / len(series)
        for s, ((name, key), color) in enumerate(zip(series, colors, strict=True)):
            vals = [r.get(key) for r in rows]
            xs = [
                xi + (s - (len(series) - 1) / 2) * width
                for xi, v in zip(x, vals, strict=True)
                if v is not None
            ]
            ys = [v for v in vals if v is not None]
            bars = ax.bar(xs, ys, width, label=name if ys else f"{name}: not available", color=color)
            for b, v in zip(bars, ys, strict=True):
                ax.annotate(
                    f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7
                )
        ax.set_yscale("log")
        top = max(r[k] for r in rows for _, k in series if r.get(k) is not None)
        ax.set_ylim(top=top * 12)  # room for the legend above the bars
        ax.set_ylabel(unit + " (log scale)")
        ax.set_title(title)
        ax.set_xticks(x, labels)
        ax.legend(fontsize=8, loc="upper center", ncols=3)
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cycles_by_kind(costs: dict, model_names: dict[str, str], path: Path) -> None:
    """Stacked bars: the cycle model's milliseconds per op kind, inference and training step, per model and keep.

    costs: {"inference" | "training": {(model, keep): cycle_model.ProgramCost}}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = [k for k in KIND_ORDER if any(k in c.by_kind() for by in costs.values() for c in by.values())]
    backward = sorted({k for by in costs.values() for c in by.values() for k in c.by_kind()} - set(kinds))
    kinds += backward
    cmap = plt.get_cmap("tab20")
    colors = {k: cmap(i % 20) for i, k in enumerate(kinds)}
    fig, axes = plt.subplots(1, len(costs), figsize=(8 * len(costs), 7), constrained_layout=True)
    for ax, (what, by_config) in zip(np.atleast_1d(axes), costs.items(), strict=True):
        keys = list(by_config)
        x = np.arange(len(keys))
        bottom = np.zeros(len(keys))
        for kind in kinds:
            ms = np.array(
                [by_config[k].by_kind().get(kind, 0.0) / (by_config[k].clock_mhz * 1e3) for k in keys]
            )
            if ms.any():
                ax.bar(x, ms, 0.7, bottom=bottom, label=kind, color=colors[kind])
            bottom += ms
        for xi, total in zip(x, bottom, strict=True):
            ax.annotate(f"{total:.0f} ms" if total >= 100 else f"{total:.1f} ms", (xi, total), ha="center",
                        va="bottom", fontsize=8)  # fmt: skip
        ax.set_xticks(x, [f"{model_names[m]}\n{_keep_label(k)}" for m, k in keys])
        ax.set_ylabel("ms per sample at the engine clock (estimated)")
        ax.set_title(f"{what}: engine cycles per op kind (cycle model, estimated)")
        ax.set_ylim(top=1.3 * bottom.max())  # room for the legend above the smaller model's bars
        ax.legend(fontsize=7, ncols=3, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
