"""Training on the C-sim engine, one sample per start, through `trilevel-host train`.

    .venv/bin/python bench/csim_training.py [--steps 600] [--finetune-steps 300] [--eval 300]
                                            [--output bench/results/csim_training.json] [--no-deit]

(a) From scratch: the tiny Tri-Level ViT of tests/tiny_vit.py at its random initialisation,
exported (calibrated on 64 images, with an example-level subset of 80 % of the training set),
trained per sample on a Fashion-MNIST subset: first a short learning-rate sweep, then the main
run at the best rate of the sweep (lowest mean loss of its last 50 steps). (b) Fine-tuning:
the same model trained briefly in PyTorch (300 AdamW steps), exported, then trained per sample
on the engine. Accuracy before/after on the first --eval test images, through the engine.
(c) One DeiT-T/224 training step (TA-Selectors at 0.7/0.3, random weights: the synthetic
package of the cycle model) on the C-sim, timed once.

Times are C-sim wall times on this machine's CPU, not hardware latencies; the cycle model's
figure for one training step is an estimate. Writes the JSON results and a loss-curve PNG.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "host"), str(ROOT / "tests")]

import tiny_vit  # noqa: E402
import torch  # noqa: E402
from trilevel_host.cli import main as host_main  # noqa: E402

from model_export.cli import main as export_main  # noqa: E402

SWEEP_LRS = (0.03, 0.01, 0.003)
FINETUNE_LR = 0.0003


def export(model, work: Path, name: str) -> Path:
    active = torch.from_numpy(np.random.default_rng(0).random(60000) < 0.8)
    ckpt = tiny_vit.save(model, work / f"{name}.pt", example_active=active)
    out = work / name
    assert export_main(tiny_vit.quick_export_args(ckpt, out, calib_images=64)) == 0
    return out


def train(pkg: Path, work: Path, name: str, steps: int, lr: float, n_eval: int, schedule="constant") -> dict:
    result = work / f"{name}.json"
    argv = ["train", "--package", str(pkg), "--backend", "csim", "--steps", str(steps), "--lr", str(lr),
            "--schedule", schedule, "--output", str(work / name), "--eval", str(n_eval), "--seed", "0",
            "--result", str(result)]  # fmt: skip
    rc = host_main(argv)
    if rc != 0:
        raise SystemExit(f"trilevel-host {' '.join(argv)} exited with {rc}")
    return json.loads(result.read_text())


def deit_tiny_step() -> dict:
    """One training step of DeiT-T/224 (0.7/0.3) on the C-sim, random weights and input."""
    from trilevel_host.device.csim import CSimDevice
    from trilevel_host.engine.cycle_model import program_cost
    from trilevel_host.engine.synthetic import synthetic_package
    from trilevel_host.engine.train_program import build_train_program
    from trilevel_host.trainer import EngineTrainer

    pkg = synthetic_package("deit_tiny_patch16_224", 0.7, 0.3)
    t0 = time.perf_counter()
    prog = build_train_program(pkg, 1e-4)
    build_s = time.perf_counter() - t0
    trainer = EngineTrainer(prog, CSimDevice(), timeout=3600)
    rng = np.random.default_rng(0)
    x = rng.integers(-256, 256, size=(3, 224, 224))
    seconds = trainer.train_step(x, 7)
    ops = prog.forward + prog.backward
    est = program_cost(np.stack([op.descriptor(k + 1) for k, op in enumerate(ops)]))
    trainer.close()
    return {"csim_s": seconds, "program_build_s": build_s, "descriptors": len(ops),
            "estimated_ms": est.ms, "estimated_label": "estimated (cycle model, not a measurement)"}  # fmt: skip


def plot(scratch: dict, finetune: dict, path: Path, window: int = 25) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, r, title in ((axes[0], scratch, "(a) from random init"), (axes[1], finetune, "(b) fine-tuning")):
        loss = np.asarray(r["loss"])
        ax.plot(loss, color="0.8", lw=0.6, label="per sample")
        if len(loss) >= window:
            ax.plot(np.arange(window - 1, len(loss)), np.convolve(loss, np.ones(window) / window, "valid"),
                    color="C0", label=f"mean of {window}")  # fmt: skip
        ax.set_title(
            f"{title}: lr {r['lr']}, test acc {100 * r['acc_before']:.1f}% -> {100 * r['acc_after']:.1f}%"
        )
        ax.set_xlabel("step (one sample)")
        ax.set_ylabel("cross-entropy")
        ax.legend()
    fig.suptitle("Tiny Tri-Level ViT trained per sample on the C-sim engine (Fashion-MNIST)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--sweep-steps", type=int, default=150)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--eval", type=int, default=300)
    ap.add_argument("--output", default=str(ROOT / "bench/results/csim_training.json"))
    ap.add_argument("--no-deit", action="store_true", help="skip the DeiT-T step (minutes)")
    args = ap.parse_args()
    out = Path(args.output)
    with tempfile.TemporaryDirectory(prefix="csim-training-") as tmp:
        work = Path(tmp)
        scratch_pkg = export(tiny_vit.build(seed=0), work, "scratch")
        sweep = {}
        for lr in SWEEP_LRS:
            r = train(scratch_pkg, work, f"sweep-{lr}", args.sweep_steps, lr, 0)
            sweep[str(lr)] = float(np.mean(r["loss"][-50:]))
        best = min(SWEEP_LRS, key=lambda lr: sweep[str(lr)])
        scratch = train(scratch_pkg, work, "scratch-trained", args.steps, best, args.eval)
        trained_pkg = export(tiny_vit.train(tiny_vit.build(seed=0)), work, "trained")
        finetune = train(trained_pkg, work, "finetuned", args.finetune_steps, FINETUNE_LR, args.eval)
    deit = None if args.no_deit else deit_tiny_step()
    loss = scratch["loss"]
    result = {
        "what": "per-sample SGD on the C-sim engine via `trilevel-host train`; times are C-sim wall times",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "lr_sweep_mean_loss_last_50": sweep,
        "sweep_steps": args.sweep_steps,
        "steps": scratch["steps"],
        "lr": best,
        "loss_first_50": float(np.mean(loss[:50])),
        "loss_last_50": float(np.mean(loss[-50:])),
        "acc_before": scratch["acc_before"],
        "acc_after": scratch["acc_after"],
        "eval_images": scratch["eval_images"],
        "subset_size": scratch["subset_size"],
        "finetune": {
            "steps": finetune["steps"],
            "lr": FINETUNE_LR,
            "loss_first_50": float(np.mean(finetune["loss"][:50])),
            "loss_last_50": float(np.mean(finetune["loss"][-50:])),
            "acc_before": finetune["acc_before"],
            "acc_after": finetune["acc_after"],
        },  # fmt: skip
        "s_per_step_tiny": scratch["seconds_per_step"]["mean"],
        "s_per_step_label": scratch["seconds_per_step"]["label"],
        "tiny_step_estimated_ms": scratch["step_latency_estimated_ms"],
        "s_per_step_deit_tiny": None if deit is None else deit["csim_s"],
        "deit_tiny": deit,
        "loss_curve_scratch": loss,
        "loss_curve_finetune": finetune["loss"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(scratch, finetune, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("loss_curve")}, indent=1))


if __name__ == "__main__":
    main()
