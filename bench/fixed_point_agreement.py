"""Fixed-point reference vs float PyTorch vs ONNX on the 10,000 Fashion-MNIST test images.

    .venv/bin/python bench/fixed_point_agreement.py --checkpoint runs/x/last.pt [--package pkg/]

Exports the package first when --package is not given (into a temporary folder). Writes
bench/results/fixed_point_agreement.json. Everything runs on the CPU: reference_img_per_s
is the numpy reference's throughput on this machine's cores, not an accelerator figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "host")]

from trilevel_host import fixedpoint as fp  # noqa: E402
from trilevel_host import load_package  # noqa: E402
from trilevel_host.reference import ReferenceModel  # noqa: E402

from model_export.cli import main as export_main  # noqa: E402
from model_export.data import load_split, normalize  # noqa: E402
from model_export.onnx_export import run_onnx  # noqa: E402
from trilevel.checkpoint import load_model  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--package", default=None, help="an exported package of that checkpoint")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "fixed_point_agreement.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        pkg_dir = args.package
        if pkg_dir is None:
            pkg_dir = str(Path(tmp) / "pkg")
            if export_main(
                ["--checkpoint", args.checkpoint, "--output", pkg_dir, "--data-dir", args.data_dir or ""]
                if args.data_dir
                else ["--checkpoint", args.checkpoint, "--output", pkg_dir]
            ):
                return 2
        result = measure(args, pkg_dir)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, indent=1))
    return 0


def measure(args, pkg_dir: str) -> dict:
    model, cfg, _ = load_model(args.checkpoint)
    pkg = load_package(pkg_dir)
    ref = ReferenceModel.from_package(pkg)
    te = load_split("test", args.data_dir)
    n = min(args.images, len(te))
    x = normalize(te.images[:n], te.mean, te.std)
    labels = te.labels[:n].numpy()

    model.trilevel.record = True
    logits_t, idx_t, conn_t = [], [], []
    with torch.no_grad():
        for s in range(0, n, args.batch):
            logits_t.append(model(x[s : s + args.batch]).numpy())
            idx_t.append([t.numpy() for t in model.trilevel.last_keep_idx])
            conn_t.append([None if c is None else c.numpy() for c in model.trilevel.last_connections])
    logits_t = np.concatenate(logits_t)

    stats = fp.SatStats()
    logits_r, idx_r, conn_r = [], [], []
    t0 = time.perf_counter()
    for s in range(0, n, args.batch):
        fwd = ref.forward(ref.quantize_input(x[s : s + args.batch].numpy()))
        logits_r.append(ref.logits_float(fwd))
        idx_r.append(fwd.keep_idx)
        conn_r.append(fwd.connections)
        for k, (sat, tot) in fwd.stats.counts.items():
            stats.add(k, sat, tot)
    ref_s = time.perf_counter() - t0
    logits_r = np.concatenate(logits_r)

    n_sel = len(idx_r[0])
    token_agree = [
        float(np.concatenate([(r[j] == t[j]).all(1) for r, t in zip(idx_r, idx_t, strict=True)]).mean())
        for j in range(n_sel)
    ]
    conn_agree = []
    for j in range(n_sel):
        if conn_r[0][j] is None:
            conn_agree.append(None)
            continue
        pairs = zip(conn_r, conn_t, strict=True)
        same = [(r[j] == t[j]).all(-1).mean(1) for r, t in pairs if r[j].shape == t[j].shape]
        conn_agree.append(float(np.concatenate(same).mean()))

    onnx_logits = run_onnx(pkg.path("model.onnx"), x.numpy())
    diff = np.abs(logits_r - logits_t)
    sat = {k: v for k, v in stats.as_dict().items() if v["saturated"]}
    return {
        "checkpoint": str(args.checkpoint),
        "model": pkg.manifest["model"]["timm_name"],
        "model_dims": {
            k: pkg.manifest["model"][k] for k in ("embed_dim", "depth", "num_heads", "num_patches")
        },
        "selector": {
            k: pkg.manifest["selector"][k]
            for k in ("locations", "token_keep", "attn_keep", "tokens_per_stage")
        },
        "images": n,
        "float_top1": float((logits_t.argmax(1) == labels).mean()),
        "fixed_top1": float((logits_r.argmax(1) == labels).mean()),
        "top1_agreement": float((logits_r.argmax(1) == logits_t.argmax(1)).mean()),
        "token_index_agreement": min(token_agree),
        "token_index_agreement_per_selector": token_agree,
        "connection_row_agreement_per_selector": conn_agree,
        "logit_abs_diff": {
            "median": float(np.median(diff)),
            "p99": float(np.quantile(diff, 0.99)),
            "max": float(diff.max()),
        },
        "onnx_max_abs_diff": float(np.abs(onnx_logits - logits_t).max()),
        "package_bytes": int(
            sum(e["bytes"] for e in pkg.manifest["files"].values()) + pkg.path("manifest.json").stat().st_size
        ),
        "weights_bytes": int(
            sum(e["bytes"] for r, e in pkg.manifest["files"].items() if r.startswith("weights/"))
        ),
        "reference_img_per_s": n / ref_s,
        "reference_device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), numpy {np.__version__}",
        "saturated_elements": sat,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    sys.exit(main())
