"""C-sim seconds per image for a whole DeiT-T/224 forward, dense and Tri-Level/0.7, checked against the oracle.

    .venv/bin/python bench/csim_forward.py [--images 1] [--output bench/results/csim_forward.json]

Builds timm's deit_tiny_patch16_224 with random weights (nothing is downloaded), patched with
the TA-Selector: ``dense`` has no selector, ``trilevel_0.7`` keeps R_T = 0.7 of the tokens and
R_A = 0.3 of the connections at blocks 3, 6, 9. Each is
exported to a model package through the Python API (8 calibration images, 1 golden sample, no
ONNX), loaded into the C-sim engine, and run on ``--images`` random images; every layer's
output, the kept tokens, the connections and the logits must equal the numpy reference's.
The seconds are the C++ engine's wall time on this machine's CPU: not a hardware latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "host")]

from trilevel_host import load_package  # noqa: E402
from trilevel_host.device.csim import CSimDevice  # noqa: E402
from trilevel_host.reference import ReferenceModel  # noqa: E402
from trilevel_host.runner import EngineRunner  # noqa: E402

from model_export.package_writer import write_package  # noqa: E402
from trilevel import models  # noqa: E402
from trilevel.data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from trilevel.patch import patch  # noqa: E402

TIMM_NAME = "deit_tiny_patch16_224"
VARIANTS = {"dense": (1.0, 1.0, ()), "trilevel_0.7": (0.7, 0.3, (3, 6, 9))}  # R_T, R_A, selector blocks


def export(token_keep: float, attn_keep: float, locations: tuple[int, ...], out: Path, seed: int = 0) -> Path:
    """A random-init DeiT-T/224 package (the exporter's Python API: no dataset of that size here)."""
    torch.manual_seed(seed)
    model = patch(models.create(TIMM_NAME, {}), token_keep, attn_keep, locations).eval()
    calib = torch.randn(8, 3, 224, 224)
    ckpt = {"model_spec": {"timm_name": TIMM_NAME, "kwargs": {}}}
    with torch.no_grad():
        write_package(
            model, ckpt, calib, out, golden_images=calib[:1], golden_labels=torch.zeros(1, dtype=torch.long),
            onnx=False, normalization={"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            calibration_info={"dataset": "random normal images", "seed": seed},
            producer={"tool": "bench/csim_forward.py"},
        )  # fmt: skip
    return out


def check_equal(runner: EngineRunner, fwd, b: int) -> None:
    """Every traced layer output of sample b, the kept tokens and connections: engine == reference."""
    for name, t in fwd.trace.items():
        got = runner.read(name)
        if not np.array_equal(got.reshape(t[b].shape), t[b]):
            raise AssertionError(f"C-sim differs from the reference at {name}")
    for i, k in zip(runner.program.cfg.locations, fwd.keep_idx, strict=True):
        if not np.array_equal(runner.read(f"blocks.{i}.keep_idx")[0], k[b]):
            raise AssertionError(f"kept tokens differ at block {i}")


def bench(pkg_dir: Path, n_images: int) -> dict:
    pkg = load_package(pkg_dir)
    ref = ReferenceModel.from_package(pkg)
    m = pkg.manifest["model"]
    x = ref.quantize_input(
        np.random.default_rng(1).standard_normal((n_images, m["in_chans"], m["img_size"], m["img_size"]))
    )
    t0 = time.perf_counter()
    fwd = ref.forward(x, trace=True)
    oracle_s = (time.perf_counter() - t0) / n_images
    t0 = time.perf_counter()
    runner = EngineRunner.from_package(pkg, CSimDevice())
    load_s = time.perf_counter() - t0
    seconds = []
    for b in range(n_images):
        out = runner.infer(x[b])
        seconds.append(out.seconds)
        if not np.array_equal(out.logits, fwd.logits[b]):
            raise AssertionError("C-sim logits differ from the reference")
        check_equal(runner, fwd, b)
    return {
        "tokens_per_stage": pkg.manifest["selector"]["tokens_per_stage"],
        "connections_per_stage": pkg.manifest["selector"]["connections_per_stage"],
        "descriptors": len(runner.program.forward),
        "arena_bytes": runner.program.arena.size,
        "images": n_images,
        "csim_seconds_per_image": float(np.mean(seconds)),
        "csim_seconds": seconds,
        "load_seconds": load_s,
        "oracle_seconds_per_image": oracle_s,
        "equal_to_oracle": True,  # every check above raised otherwise
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "csim_forward.json"))
    args = ap.parse_args(argv)
    subprocess.run(["make", "-s", "-C", str(ROOT / "hls"), "csim", f"PYTHON={sys.executable}"], check=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (rt, ra, locations) in VARIANTS.items():
            pkg = export(rt, ra, locations, Path(tmp) / name)
            results[name] = bench(pkg, args.images)
            r = results[name]
            print(f"{name}: {r['csim_seconds_per_image']:.2f} s/image C-sim, {r['oracle_seconds_per_image']:.2f} s "
                  f"numpy reference, tokens {r['tokens_per_stage']}, equal to the reference")  # fmt: skip
    out = {
        "what": "whole DeiT-T/224 forward (random weights) on the C-sim engine, checked against the numpy reference",
        "model": TIMM_NAME,
        "latency_label": "csim wall time (not a hardware latency)",
        "date": dt.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
