"""``trilevel-host train``: per-sample SGD of a package's model on the engine, written to a new package.

    trilevel-host train --package P --backend csim|board [--bitstream B.bit] --data fashion-mnist|DIR
                        --steps N --lr X [--schedule constant|cosine] --output P2 [--eval N] [--seed S]
                        [--result R.json]

The training samples are the package's example-level subset (``example_subset.npy``: indices
into the training split), or the whole split when the level was off; each epoch goes through
them in a new order (numpy's generator seeded with ``--seed``). One engine start per sample
runs forward, backward and SGD; the learning rate of each step is set by rewriting the SGD
descriptors (:meth:`.trainer.EngineTrainer.set_lr`) when the schedule changes it. The loss of
a step is the float cross-entropy of the logits that step's forward left in ``head.out``.
Held-out accuracy on the first ``--eval`` test images runs through the engine before and
after. The trained weights go to ``--output`` atomically (:mod:`.package_writer`), also after
Ctrl-C (the step in flight finishes first; exit 130); a JSON result file goes beside it.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import numpy as np

from . import load_package
from .data import DatasetError, load_idx_split, quantize_images
from .device.base import EngineError, EngineTimeout
from .engine.cycle_model import program_cost
from .engine.ops import UnsupportedPackage
from .engine.train_program import lr_fixed
from .package import Package, PackageError
from .package_writer import PackageWriteError, check_output, write_trained_package
from .runner import DEFAULT_TIMEOUT, InputError
from .trainer import EngineTrainer

MAX_LR = 1.0  # per-sample SGD on 16-bit weights diverges long before this


class TrainError(Exception):
    """A bad command-line input, reported as one line (exit 2)."""


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="per-sample SGD of a package's model on the engine, to a new package")
    p.add_argument("--package", required=True, help="model package folder to start from")
    p.add_argument("--backend", choices=("csim", "board"), default="csim")
    p.add_argument("--bitstream", help="bitstreams/NAME.bit, with NAME.hwh and NAME.json beside it (board)")
    p.add_argument(
        "--data", default="fashion-mnist", help="'fashion-mnist' or a folder of MNIST-format idx files"
    )
    p.add_argument("--steps", type=int, required=True, help="training samples (one SGD step each)")
    p.add_argument("--lr", type=float, required=True, help=f"learning rate, in (0, {MAX_LR}]")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--output", required=True, help="folder of the trained package (written atomically)")
    p.add_argument(
        "--eval", type=int, default=200, help="test images for the accuracy before and after (0: none)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order")
    p.add_argument("--result", help="JSON result file (default: OUTPUT.train.json beside the package)")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for one start (board)"
    )


def check_lr(lr: float) -> float:
    if not math.isfinite(lr) or lr <= 0 or lr > MAX_LR:
        raise TrainError(f"--lr {lr}: the learning rate must be a finite number in (0, {MAX_LR}]")
    if lr_fixed(lr) == 0:
        raise TrainError(f"--lr {lr}: rounds to 0 at the engine's 2^-24 learning-rate step")
    return lr


def lr_at(step: int, steps: int, lr: float, schedule: str) -> float:
    """The learning rate of step ``step`` (0-based): constant, or cosine from lr to 0 over the steps."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / steps))


def sample_order(subset: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """(steps,) training-set indices: epochs through ``subset``, each in a new seeded order."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps // len(subset))
    return np.concatenate([rng.permutation(subset) for _ in range(epochs)])[:steps]


def training_subset(pkg: Package, n_train: int) -> np.ndarray:
    """The package's example-level subset (indices into the training split), or every index."""
    es = pkg.manifest.get("example_subset")
    if not es:
        return np.arange(n_train)
    if es["dataset_size"] != n_train:
        raise TrainError(
            f"the package's example subset is of a {es['dataset_size']}-image set, --data has {n_train}"
        )
    idx = pkg.array(es["file"]).astype(np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_train:
        raise TrainError("the package's example subset holds indices outside the training split")
    return idx


def cross_entropy(logits_q: np.ndarray, frac_bits: int, label: int) -> float:
    """Float cross-entropy of int logits at ``frac_bits``."""
    z = logits_q.astype(np.float64) * 2.0**-frac_bits
    z = z - z.max()
    return float(np.log(np.exp(z).sum()) - z[label])


def accuracy(trainer: EngineTrainer, xq: np.ndarray, labels: np.ndarray) -> float | None:
    if len(xq) == 0:
        return None
    return float(
        np.mean([int(np.argmax(trainer.infer(x).logits)) == y for x, y in zip(xq, labels, strict=True)])
    )


class _StopFlag:
    """SIGINT sets a flag the loop reads between steps (a step in flight finishes); a second one aborts."""

    def __init__(self) -> None:
        self.stop = False
        self.previous = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _progress(n: int):
    try:
        from tqdm import tqdm

        return tqdm(total=n, unit="step", file=sys.stderr)
    except ImportError:
        return None


def train(args, trainer: EngineTrainer, pkg: Package, device_label: str) -> dict:
    """The training loop; returns the result dict (``interrupted`` true after Ctrl-C)."""
    images, labels = load_idx_split(args.data, "train")
    order = sample_order(training_subset(pkg, len(images)), args.steps, args.seed)
    f_logits = pkg.frac_bits("head.out")
    n_classes = pkg.manifest["model"]["num_classes"]
    if labels[order].min() < 0 or labels[order].max() >= n_classes:
        raise TrainError(f"--data has labels outside the model's {n_classes} classes")
    test_x, test_y = load_idx_split(args.data, "test")
    test_xq = quantize_images(test_x[: args.eval], pkg.manifest)
    test_y = test_y[: args.eval]

    acc_before = accuracy(trainer, test_xq, test_y)
    losses, lrs, seconds = [], [], []
    flag = _StopFlag()
    bar = _progress(args.steps)
    try:
        for step, i in enumerate(order):
            if flag.stop:
                break
            lr = lr_at(step, args.steps, args.lr, args.schedule)
            if lr_fixed(lr) > 0:  # the cosine's last steps may round to 0: keep the previous rate
                trainer.set_lr(lr)
            xq = quantize_images(images[i : i + 1], pkg.manifest)[0]
            seconds.append(trainer.train_step(xq, int(labels[i])))
            losses.append(cross_entropy(trainer.logits(), f_logits, int(labels[i])))
            lrs.append(lr)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            elif (step + 1) % max(1, args.steps // 10) == 0:
                print(
                    f"step {step + 1}/{args.steps}: running loss {np.mean(losses[-50:]):.3f}", file=sys.stderr
                )
    finally:
        if bar is not None:
            bar.close()
        flag.restore()
    acc_after = accuracy(trainer, test_xq, test_y) if not flag.stop else None
    train_descs = np.stack(
        [op.descriptor(k + 1) for k, op in enumerate(trainer.program.forward + trainer.program.backward)]
    )
    est = program_cost(train_descs)
    s = np.asarray(seconds) if seconds else np.zeros(1)
    return {
        "package": str(args.package),
        "output": str(args.output),
        "backend": args.backend,
        "data": str(args.data),
        "steps": len(losses),
        "steps_requested": args.steps,
        "interrupted": flag.stop,
        "lr": args.lr,
        "schedule": args.schedule,
        "seed": args.seed,
        "subset_size": int(len(training_subset(pkg, len(images)))),
        "loss": losses,
        "lr_per_step": lrs,
        "sample_indices": [int(i) for i in order[: len(losses)]],
        "eval_images": int(len(test_xq)),
        "acc_before": acc_before,
        "acc_after": acc_after,
        "seconds_per_step": {"label": device_label, "mean": float(s.mean()), "median": float(np.median(s))},
        "step_latency_estimated_ms": {
            "label": "estimated (cycle model, not a measurement)",
            "ms": est.ms,
            "clock_mhz": est.clock_mhz,
        },
    }


def _device(args):
    if args.backend == "csim":
        from .device.csim import CSimDevice

        return CSimDevice()
    if not args.bitstream:
        raise TrainError("--backend board needs --bitstream bitstreams/NAME.bit")
    from .device.board import BoardDevice

    return BoardDevice(args.bitstream)


def _write_json(path: Path, result: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)


def run(args) -> int:
    """The ``train`` subcommand: 0 done, 130 interrupted (package written), 2 bad input, 1 engine error."""
    from .device.board import BoardError
    from .device.csim import CSimError

    try:
        check_lr(args.lr)
        if args.steps < 1 or args.eval < 0:
            raise TrainError("--steps must be at least 1 and --eval at least 0")
        pkg = load_package(args.package)
        out = check_output(args.output, pkg.root)
        device = _device(args)
        try:
            trainer = EngineTrainer.from_package(pkg, device, args.timeout, lr=args.lr)
            result = train(args, trainer, pkg, device.latency_label)
            weights = {key: trainer.weight(key) for key in pkg.manifest["weights"]}
        finally:
            device.close()
        write_trained_package(pkg, weights, out)
    except (TrainError, PackageError, PackageWriteError, DatasetError, InputError, UnsupportedPackage,
            BoardError, CSimError) as e:  # fmt: skip
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (EngineError, EngineTimeout) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside the step loop (loading, evaluation, a second Ctrl-C)
        print(f"interrupted; {args.output} left as it was", file=sys.stderr)
        return 130
    result_path = Path(args.result) if args.result else out.with_name(out.name + ".train.json")
    _write_json(result_path, result)
    if result["interrupted"]:
        print(f"interrupted after {result['steps']} steps: wrote {out} and {result_path}", file=sys.stderr)
        return 130
    loss = result["loss"]
    k = min(50, len(loss))
    acc = "" if result["acc_before"] is None else (
        f"; accuracy on {result['eval_images']} test images {100 * result['acc_before']:.1f}% -> "
        f"{100 * result['acc_after']:.1f}%"
    )  # fmt: skip
    print(
        f"{result['steps']} steps on {args.backend}: loss (mean of first/last {k}) "
        f"{np.mean(loss[:k]):.3f} -> {np.mean(loss[-k:]):.3f}{acc}; "
        f"{result['seconds_per_step']['mean']:.3f} s/step ({result['seconds_per_step']['label']})\n"
        f"wrote {out} and {result_path}"
    )
    return 0
