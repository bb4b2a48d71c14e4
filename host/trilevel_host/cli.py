"""``trilevel-host``: run a model package on the engine (C-sim or board), numpy only.

    trilevel-host infer --package P --backend csim|board [--bitstream bitstreams/NAME.bit]
                        [--data fashion-mnist|DIR] [--limit N] [--output result.json]
    trilevel-host compare [--measured RESULT.json ...]   (the paper's Table 3: compare.py)
    trilevel-host train --package P --steps N --lr X --output P2 [...]   (train_cli.py)

Streams test images one at a time through the engine, runs the numpy reference (the oracle)
on the same quantised images, and reports accuracy, top-1 agreement with the oracle, and
the per-sample wall time of each start: ``measured`` on the board, the C-sim's own wall time
(not a hardware latency) on csim. Bad input gets one ``error:`` line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import compare, load_package, train_cli
from .data import DatasetError, load_idx_split, quantize_images
from .device.base import EngineError, EngineTimeout
from .package import PackageError
from .reference import ReferenceModel
from .runner import DEFAULT_TIMEOUT, EngineRunner, InputError

ORACLE_BATCH = 64


class CliError(Exception):
    """A problem with the command line's inputs, reported as one line."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trilevel-host", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    inf = sub.add_parser("infer", help="per-sample inference of a package's model through the engine")
    inf.add_argument("--package", required=True, help="model package folder (trilevel export)")
    inf.add_argument("--backend", choices=("csim", "board"), default="csim")
    inf.add_argument("--bitstream", help="bitstreams/NAME.bit, with NAME.hwh and NAME.json beside it (board)")
    inf.add_argument(
        "--data", default="fashion-mnist", help="'fashion-mnist' or a folder of MNIST-format idx files"
    )
    inf.add_argument("--split", choices=("test", "train"), default="test")
    inf.add_argument("--limit", type=int, default=100, help="number of images (from the start of the split)")
    inf.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for one start (board)"
    )
    inf.add_argument("--output", help="JSON result file")
    compare.add_parser(sub)
    train_cli.add_parser(sub)
    return p


def _device(args):
    if args.backend == "csim":
        from .device.csim import CSimDevice

        return CSimDevice()
    if not args.bitstream:
        raise CliError("--backend board needs --bitstream bitstreams/NAME.bit")
    from .device.board import BoardDevice

    return BoardDevice(args.bitstream)


def _progress(n: int):
    """tqdm when installed, else a plain counter on stderr."""
    try:
        from tqdm import tqdm

        return tqdm(total=n, unit="img", file=sys.stderr)
    except ImportError:
        return _PlainProgress(n)


class _PlainProgress:
    def __init__(self, n: int):
        self.n, self.done = n, 0

    def update(self, k: int = 1) -> None:
        self.done += k
        if self.done == self.n or self.done % max(1, self.n // 10) == 0:
            print(f"{self.done}/{self.n} images", file=sys.stderr)

    def close(self) -> None:
        pass


def _images(args, pkg) -> tuple[np.ndarray, np.ndarray]:
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    images, labels = load_idx_split(args.data, args.split)
    m = pkg.manifest["model"]
    want = (m["in_chans"], m["img_size"], m["img_size"])
    if images.shape[1:] != want:
        raise CliError(
            f"images are {images.shape[1:]} (channels, height, width) but the package takes {want}"
        )
    n = min(args.limit, len(images))
    return quantize_images(images[:n], pkg.manifest), labels[:n]


def _oracle(pkg, xq: np.ndarray):
    """The reference's logits and selector indices, in batches."""
    ref = ReferenceModel.from_package(pkg)
    logits, keeps = [], []
    for i in range(0, len(xq), ORACLE_BATCH):
        fwd = ref.forward(xq[i : i + ORACLE_BATCH])
        logits.append(fwd.logits)
        keeps.append(fwd.keep_idx)
    keep = [np.concatenate([k[s] for k in keeps]) for s in range(len(keeps[0]))] if keeps[0] else []
    return np.concatenate(logits), keep


def _summary(seconds: list[float]) -> dict:
    s = np.asarray(seconds)
    return {
        "mean": float(s.mean()),
        "median": float(np.median(s)),
        "min": float(s.min()),
        "max": float(s.max()),
    }


def infer(args) -> dict:
    pkg = load_package(args.package)
    xq, labels = _images(args, pkg)
    device = _device(args)
    try:
        runner = EngineRunner.from_package(pkg, device, args.timeout)
        ref_logits, ref_keep = _oracle(pkg, xq)
        preds, seconds, exact, keep_equal = [], [], 0, 0
        bar = _progress(len(xq))
        try:
            for i, x in enumerate(xq):
                out = runner.infer(x)
                preds.append(int(np.argmax(out.logits)))
                seconds.append(out.seconds)
                exact += bool(np.array_equal(out.logits, ref_logits[i]))
                keep_equal += all(
                    np.array_equal(k, rk[i]) for k, rk in zip(out.keep_idx, ref_keep, strict=True)
                )
                bar.update(1)
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own
    finally:
        device.close()
    preds = np.asarray(preds)
    ref_preds = ref_logits.argmax(-1)
    n = len(preds)
    return {
        "package": str(args.package),
        "backend": args.backend,
        "data": str(args.data),
        "split": args.split,
        "images": n,
        "accuracy": float((preds == labels).mean()),
        "oracle_accuracy": float((ref_preds == labels).mean()),
        "top1_agreement_with_oracle": float((preds == ref_preds).mean()),
        "logits_bit_exact_with_oracle": exact / n,
        "kept_tokens_equal_to_oracle": keep_equal / n,
        "latency_s": {"label": device.latency_label, **_summary(seconds), "per_sample": seconds},
    }


def _write_json(path: Path, result: dict) -> None:
    """Write through a temporary file and rename, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def _report(r: dict) -> str:
    lat = r["latency_s"]
    return (
        f"{r['images']} images on {r['backend']}: accuracy {100 * r['accuracy']:.2f}% "
        f"(oracle {100 * r['oracle_accuracy']:.2f}%), top-1 agreement with the oracle "
        f"{100 * r['top1_agreement_with_oracle']:.2f}%, logits bit-exact {100 * r['logits_bit_exact_with_oracle']:.2f}%\n"
        f"per-sample latency ({lat['label']}): mean {1e3 * lat['mean']:.3f} ms, median {1e3 * lat['median']:.3f} ms, "
        f"min {1e3 * lat['min']:.3f} ms, max {1e3 * lat['max']:.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .device.board import BoardError
    from .device.csim import CSimError

    if args.command == "train":
        return train_cli.run(args)
    if args.command == "compare":
        try:
            return compare.run(args)
        except (compare.CompareError, PackageError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        result = infer(args)
    except (PackageError, DatasetError, InputError, CliError, BoardError, CSimError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (EngineError, EngineTimeout) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_report(result))
    if args.output:
        _write_json(Path(args.output), result)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
