"""``trilevel-host compare``: the paper's Table 3 (latency on the FPGA against the GPU and the paper).

    trilevel-host compare [--gpu bench/results/gpu_latency.json] [--measured RESULT.json ...]
                          [--output-dir bench/results] [--no-plots]

For DeiT-T and DeiT-S, dense and Tri-Level/0.9, /0.8, /0.7 (token keep r at the selectors of
blocks 3, 6, 9, attention keep 0.3): inference latency per image, per-sample training latency,
per-epoch training time on ImageNet-1k (1,281,167 images times the example keep ratio r for
Tri-Level, all of them dense), MACs saving; the paper's own figures beside ours.

The FPGA columns are ``measured`` when ``--measured`` gives board results (the JSON of
``trilevel-host infer --backend board --output``; the package it names says which model and
keep ratio it is), otherwise ``estimated`` by the cycle model (:mod:`.engine.cycle_model`) on
the engine's own descriptor lists for that model (:mod:`.engine.synthetic` shapes): the
inference program and the training step's ``train`` list. A column is never a mix of both;
training has no board result format yet, so measured training columns stay blank. The GPU columns come from bench/results/gpu_latency.json (bench/gpu_latency.py).
Writes latency_compare.json (``rows``), latency_compare.md and two PNG charts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import asdict
from functools import cache
from pathlib import Path

import numpy as np

from .engine import cycle_model as cm
from .engine.program import EngineProgram, build_program
from .engine.synthetic import synthetic_package
from .engine.train_program import TrainProgram, build_train_program

MODELS = {"deit_tiny_patch16_224": "DeiT-T", "deit_small_patch16_224": "DeiT-S"}
KEEPS = (1.0, 0.9, 0.8, 0.7)
ATTN_KEEP = 0.3  # the Tri-Level/r presets' attention keep ratio (as bench/gpu_latency.py)
IMAGENET_TRAIN_IMAGES = 1_281_167
TRAIN_LR = 1e-3  # any valid learning rate: the step's loops do not depend on it

# The paper's ZCU102 figures at 150 MHz, batch 1 (Kong et al., AAAI 2023, Table 3); None: not given.
PAPER = {
    ("deit_tiny_patch16_224", 1.0): {"infer_ms": 10.91, "epoch_h": 13.79},
    ("deit_tiny_patch16_224", 0.9): {"infer_ms": 9.68, "epoch_h": None},
    ("deit_tiny_patch16_224", 0.8): {"infer_ms": 8.50, "epoch_h": None},
    ("deit_tiny_patch16_224", 0.7): {"infer_ms": 7.36, "epoch_h": 8.91},
    ("deit_small_patch16_224", 1.0): {"infer_ms": 25.68, "epoch_h": 32.44},
    ("deit_small_patch16_224", 0.7): {"infer_ms": 17.61, "epoch_h": 21.15},
}


class CompareError(Exception):
    """A bad input file; the message is one line."""


# ---------------------------------------------------------------- the engine's programs


def engine_program(model: str, keep: float) -> EngineProgram:
    """The engine's inference program of ``model`` at token keep ``keep`` (attention keep 0.3; 1.0 is dense)."""
    return build_program(synthetic_package(model, keep, 1.0 if keep >= 1.0 else ATTN_KEEP))


def engine_train_program(model: str, keep: float) -> TrainProgram:
    """The engine's training-step program (forward with caches, backward, SGD) of ``model`` at ``keep``."""
    return build_train_program(synthetic_package(model, keep, 1.0 if keep >= 1.0 else ATTN_KEEP), lr=TRAIN_LR)


def forward_cost(prog: EngineProgram, settings: cm.Settings | None = None) -> cm.ProgramCost:
    """The cycle model's cost of one inference (the ``forward`` list)."""
    return _cost(prog.forward, settings)


def train_cost(prog: TrainProgram, settings: cm.Settings | None = None) -> cm.ProgramCost:
    """The cycle model's cost of one training step (the ``train`` list: forward with caches, backward, SGD)."""
    return _cost(prog.forward + prog.backward, settings)


def _cost(ops: list, settings: cm.Settings | None) -> cm.ProgramCost:
    descs = np.stack([op.descriptor(i + 1) for i, op in enumerate(ops)])
    return cm.program_cost(descs, [op.name for op in ops], settings)


@cache
def estimate(model: str, keep: float) -> tuple[cm.ProgramCost, cm.ProgramCost]:
    """The cycle model's (inference, training step) costs of ``model`` at ``keep``, kernels as written."""
    return forward_cost(engine_program(model, keep)), train_cost(engine_train_program(model, keep))


def epoch_hours(sample_ms: float | None, keep: float) -> float | None:
    """Per-epoch training time on ImageNet-1k: the example level keeps ``keep`` of the images."""
    if sample_ms is None:
        return None
    return sample_ms * IMAGENET_TRAIN_IMAGES * keep / 3.6e6


# ---------------------------------------------------------------- input files


def load_gpu(path: Path) -> tuple[str, dict]:
    """(GPU name, {(model, keep): row}) from bench/gpu_latency.py's results."""
    try:
        data = json.loads(Path(path).read_text())
        rows = {(r["model"], float(r["keep"])): r for r in data["rows"]}
        return str(data["gpu_name"]), rows
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CompareError(f"{path}: not a GPU latency result of bench/gpu_latency.py ({e})") from None


def _package_model(result_path: Path, package: str) -> tuple[str, float]:
    """(timm name, token keep) of the package a board result names (its manifest only)."""
    manifest = Path(package) / "manifest.json"
    if not manifest.is_absolute():
        manifest = result_path.parent / manifest if not manifest.exists() else manifest
    try:
        m = json.loads(manifest.read_text())
        locations = m["selector"]["locations"]
        keep = float(m["selector"]["token_keep"]) if locations else 1.0
        return m["model"]["timm_name"], keep
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CompareError(
            f"{result_path}: cannot read the manifest of its package {package} ({e})"
        ) from None


def load_measured(paths: list[Path]) -> dict[tuple[str, float], float]:
    """{(model, keep): median ms per image} from `trilevel-host infer --backend board` results."""
    out = {}
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
            backend, package, median_s = r["backend"], r["package"], float(r["latency_s"]["median"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CompareError(f"{p}: not a result of `trilevel-host infer --output` ({e})") from None
        if backend != "board":
            raise CompareError(f"{p}: backend {backend!r}; only board runs are measurements")
        out[_package_model(Path(p), package)] = 1e3 * median_s
    return out


# ---------------------------------------------------------------- the table


def build_rows(gpu_path: Path, measured: dict[tuple[str, float], float]) -> tuple[list[dict], dict]:
    """The table's rows, and the cycle model's costs {"inference"|"training": {(model, keep): ProgramCost}}."""
    gpu_name, gpu = load_gpu(gpu_path)
    source = "measured" if measured else "estimated"
    rows, costs = [], {"inference": {}, "training": {}}
    for model in MODELS:
        dense_macs = None
        for keep in KEEPS:
            cost, train = estimate(model, keep)
            costs["inference"][(model, keep)], costs["training"][(model, keep)] = cost, train
            dense_macs = dense_macs or cost.macs
            g = gpu.get((model, keep), {})
            paper = PAPER.get((model, keep), {})
            est_infer = cost.ms
            fpga_infer = measured.get((model, keep)) if measured else est_infer
            # no board result format for training exists yet: measured training is blank, never the estimate
            fpga_train = None if measured else train.ms
            rows.append(
                {
                    "model": model,
                    "keep": keep,
                    "attn_keep": 1.0 if keep >= 1.0 else ATTN_KEEP,
                    "fpga_source": source,
                    "fpga_infer_ms": fpga_infer,
                    "fpga_train_ms": fpga_train,
                    "fpga_epoch_h": epoch_hours(fpga_train, keep),
                    "estimated_infer_ms": est_infer,
                    "estimated_train_ms": train.ms,
                    "estimated_train_ms_by_op_kind": {k: cm_ms(train, v) for k, v in train.by_kind().items()},
                    "mac_array_bound_ms": cost.mac_array_bound_ms(),
                    "estimated_infer_ms_by_op_kind": {k: cm_ms(cost, v) for k, v in cost.by_kind().items()},
                    "engine_macs": cost.macs,
                    "macs_saving": 1.0 - cost.macs / dense_macs,
                    "paper_infer_ms": paper.get("infer_ms"),
                    "paper_epoch_h": paper.get("epoch_h"),
                    "gpu_name": gpu_name,
                    "gpu_infer_ms": g.get("infer_ms_median"),
                    "gpu_train_ms": g.get("train_ms_median"),
                    "gpu_epoch_h_batch1": epoch_hours(g.get("train_ms_median"), keep),
                    "gpu_epoch_h_best_batch": (
                        IMAGENET_TRAIN_IMAGES * keep / g["train_img_per_s"] / 3600
                        if "train_img_per_s" in g
                        else None
                    ),
                }
            )
    return rows, costs


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{digits}f}"


def markdown(rows: list[dict], costs: dict) -> str:
    src = rows[0]["fpga_source"]
    gpu = rows[0]["gpu_name"]
    lines = [
        "# Latency: the engine against the GPU and the paper (Table 3)",
        "",
        f"FPGA columns: **{src}** ({'board wall time' if src == 'measured' else 'cycle model at 150 MHz, not a measurement'}). "
        f"GPU: {gpu}, batch 1 in CUDA graphs (bench/gpu_latency.py). Paper: ZCU102 at 150 MHz, batch 1. "
        f"Tri-Level/r: token keep r at blocks 3, 6, 9, attention keep {ATTN_KEEP}; an epoch is "
        f"{IMAGENET_TRAIN_IMAGES:,} x r images (dense: all). Blank: not available.",
        "",
        f"| model | keep | FPGA infer ms ({src}) | paper infer ms | GPU infer ms | FPGA train ms/sample ({src}) "
        "| GPU train ms/sample | FPGA epoch h | paper epoch h | GPU epoch h (batch 1) | GPU epoch h (best batch) "
        "| MACs saving |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # GPU per-epoch figures: per-sample steps (batch 1, CUDA graph) and the best batch's throughput
    for r in rows:
        lines.append(
            f"| {MODELS[r['model']]} | {'dense' if r['keep'] >= 1 else r['keep']} | {_fmt(r['fpga_infer_ms'])} "
            f"| {_fmt(r['paper_infer_ms'])} | {_fmt(r['gpu_infer_ms'], 3)} | {_fmt(r['fpga_train_ms'])} "
            f"| {_fmt(r['gpu_train_ms'], 3)} | {_fmt(r['fpga_epoch_h'])} | {_fmt(r['paper_epoch_h'])} "
            f"| {_fmt(r['gpu_epoch_h_batch1'])} | {_fmt(r['gpu_epoch_h_best_batch'])} "
            f"| {100 * r['macs_saving']:.1f}% |"
        )
    lines += ["", "MACs saving: the engine program's MACs (linear layers and attention) against dense."]
    for what, by_config in costs.items():
        lines += ["", f"## Where the engine's cycles go: {what} (cycle model, estimated)", ""]
        lines += _breakdown_tables(by_config)
    return "\n".join(lines) + "\n"


def _breakdown_tables(costs: dict) -> list[str]:
    first = next(iter(costs.values())).by_kind()
    kinds = sorted({k for c in costs.values() for k in c.by_kind()}, key=lambda k: (-first.get(k, 0.0), k))
    lines = ["Milliseconds per op kind:", "", "| model | keep | total | " + " | ".join(kinds) + " |"]
    lines.append("|---|---|---|" + "---|" * len(kinds))
    for (model, keep), c in costs.items():
        bk = c.by_kind()
        lines.append(
            f"| {MODELS[model]} | {keep} | {c.ms:.2f} | "
            + " | ".join(_fmt(cm_ms(c, bk.get(k))) for k in kinds)
            + " |"
        )
    lines += ["", "Cycles by kind of work (ms): issue = trips x II, fill = pipeline depths, axi = AXI round "
              "trips paid per burst, overlap = hidden by the weight ping-pong:", "",
              "| model | keep | issue | fill | axi | overlap | MAC-array bound |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for (model, keep), c in costs.items():
        s = c.split()
        lines.append(
            f"| {MODELS[model]} | {keep} | "
            + " | ".join(_fmt(cm_ms(c, s[k])) for k in ("issue", "fill", "axi", "overlap"))
            + f" | {c.mac_array_bound_ms():.2f} |"
        )
    tiny, small = MODELS
    for key in ((tiny, 1.0), (tiny, 0.7), (small, 1.0)):
        c = costs[key]
        loops = sorted(c.by_loop().items(), key=lambda kv: -abs(kv[1]))[:12]
        lines += [
            "",
            f"Top loops, {MODELS[key[0]]} {'dense' if key[1] >= 1 else key[1]} (ms, before overlap):",
            "",
        ]
        lines += ["| loop | ms | II | depth | DDR |", "|---|---|---|---|---|"]
        for label, cyc in loops:
            lp = cm.LOOPS.get(label)
            extra = f"{lp.ii:g} | {lp.depth} | {lp.ddr or ''}" if lp else " | | "
            lines.append(f"| {label} | {cm_ms(c, cyc):.2f} | {extra} |")
    return lines


def cm_ms(cost: cm.ProgramCost, cycles: float | None) -> float | None:
    return None if cycles is None else cycles / (cost.clock_mhz * 1e3)


# ---------------------------------------------------------------- outputs and the command


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename: a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="the paper's Table 3: engine latency against the GPU and the paper")
    p.add_argument("--gpu", default="bench/results/gpu_latency.json", help="bench/gpu_latency.py results")
    p.add_argument(
        "--measured",
        nargs="+",
        default=[],
        help="board results of `trilevel-host infer --backend board --output`",
    )
    p.add_argument("--output-dir", default="bench/results")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG charts (matplotlib)")


def run(args: argparse.Namespace) -> int:
    measured = load_measured([Path(p) for p in args.measured])
    rows, costs = build_rows(Path(args.gpu), measured)
    out = Path(args.output_dir)
    meta = {
        "fpga_source": rows[0]["fpga_source"],
        "clock_mhz": next(iter(costs["inference"].values())).clock_mhz,
        "memory_assumptions": asdict(cm.DEFAULT_MEMORY),
        "training": "one SGD step on one sample: the engine's train list (forward with caches, backward, SGD)",
        "imagenet_train_images": IMAGENET_TRAIN_IMAGES,
    }
    _write_text(out / "latency_compare.json", json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    _write_text(out / "latency_compare.md", markdown(rows, costs))
    written = ["latency_compare.json", "latency_compare.md"]
    if not args.no_plots:
        from .compare_plots import plot_cycles_by_kind, plot_latency

        plot_latency(rows, MODELS, out / "latency_compare.png")
        plot_cycles_by_kind(costs, MODELS, out / "latency_cycles_by_op.png")
        written += ["latency_compare.png", "latency_cycles_by_op.png"]
    for r in rows:
        print(
            f"{MODELS[r['model']]:7s} keep {r['keep']:.1f}: FPGA {r['fpga_source']} infer "
            f"{_fmt(r['fpga_infer_ms']) or '-':>7s} ms, train {_fmt(r['fpga_train_ms']) or '-':>7s} ms/sample "
            f"(paper {_fmt(r['paper_infer_ms']) or '-'} ms, {_fmt(r['paper_epoch_h']) or '-'} h/epoch)  "
            f"GPU {_fmt(r['gpu_infer_ms'], 3) or '-'} / {_fmt(r['gpu_train_ms'], 3) or '-'} ms  "
            f"MACs saving {100 * r['macs_saving']:.1f}%"
        )
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0
