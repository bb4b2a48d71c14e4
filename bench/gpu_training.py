"""Dense against Tri-Level training of DeiT-T/224 on Fashion-MNIST, same recipe and epochs.

    python bench/gpu_training.py --epochs 20                       # every run
    python bench/gpu_training.py --runs dense:0 trilevel-0.7:0     # a subset, merged into the JSON

Each run is a separate `trilevel train` process (compiled, bf16, data on the GPU), so one
run's compiled graphs do not leak into the next; the on-disk compile caches are shared,
as they would be between real runs on one machine, unless --cold-cache gives every run
empty ones of its own (its compile time is then that of a fresh machine). Writes
bench/results/gpu_training.json and gpu_training.md. Only meaningful on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
from trilevel.config import PRESETS  # noqa: E402

# name -> keep ratios (token, attention, example): the run presets of `trilevel train --preset`.
RUNS = {name: (p["token_keep"], p["attn_keep"], p["example_keep"]) for name, p in PRESETS.items()}
DEFAULT = ["dense:0", "dense:1", "trilevel-0.7:0", "trilevel-0.7:1", "trilevel-0.9:0", "trilevel-0.8:0",
           "example-0.7:0", "token-0.7:0", "attn-0.7:0"]  # fmt: skip


def train(name: str, seed: int, args) -> dict:
    token, attn, example = RUNS[name]
    out = Path(args.work) / f"{name}-s{seed}"
    cmd = [
        sys.executable, "-m", "trilevel.cli", "train", "--model", args.model, "--img-size", "224",
        "--dataset", "fashion-mnist", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--token-keep", str(token), "--attn-keep", str(attn), "--example-keep", str(example),
        "--seed", str(seed), "--output", str(out), "--no-resume", "--ratio-levels", str(args.ratio_levels),
        "--compile" if args.compile else "--no-compile",
    ]  # fmt: skip
    if example < 1.0:  # scale the paper's 5 updates (every 30 of 300 epochs) to the run
        cmd += ["--example-updates", str(args.example_updates)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="trilevel-compile-cache-") as cache:
        if args.cold_cache:
            env |= {"TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": str(Path(cache) / "triton")}
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, timeout=args.run_timeout)
    m = json.loads((out / "metrics.json").read_text())
    return {
        "name": name,
        "seed": seed,
        "wall_time_s": round(m["wall_time_s"], 2),
        "train_time_s": round(m["train_time_s"], 2),
        "img_per_s": round(m["img_per_s"], 1),
        "compile_time_s": round(m["compile_time_s"], 2),
        "steady_img_per_s": round(m["steady_img_per_s"], 1),
        "top1": m["top1"],
        "macs_per_image": m["macs_per_image"],
        "train_macs_saving": round(m["train_macs_saving"], 4),
        "token_keep": token,
        "attn_keep": attn,
        "example_keep": example,
        "tokens_per_stage": m["tokens_per_stage"],
        "cold_cache": args.cold_cache,
    }


def summarise(result: dict) -> str:
    runs = result["runs"]
    dense = [r for r in runs if r["name"] == "dense"]
    base = sum(r["wall_time_s"] for r in dense) / len(dense) if dense else None
    base_top1 = sum(r["top1"] for r in dense) / len(dense) if dense else None
    base_steady = sum(_steady_time(r) for r in dense) / len(dense) if dense else None
    saving = lambda t, b: f"{100 * (1 - t / b):.1f}%" if b else "-"
    lines = [
        f"# GPU training benchmark ({result['gpu']}, {result['epochs']} epochs, {result['model']}, Fashion-MNIST 224)",
        "",
        "Wall time is the whole run: compilation, every epoch's training and evaluation. "
        "Compile is the time of the steps that compiled a graph and recorded its CUDA graph; "
        "the steady columns leave it out.",
        "",
        "| run | seed | wall time (s) | saved vs dense | compile (s) | steady time saved | img/s | steady img/s | top-1 | top-1 vs dense | MACs/img (G) | training MACs saved |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in sorted(runs, key=lambda r: (list(RUNS).index(r["name"]), r["seed"])):
        dtop = f"{r['top1'] - base_top1:+.2f}" if base_top1 is not None else "-"
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['wall_time_s']:.1f} | {saving(r['wall_time_s'], base)} | "
            f"{r['compile_time_s']:.1f} | {saving(_steady_time(r), base_steady)} | {r['img_per_s']:.0f} | "
            f"{r['steady_img_per_s']:.0f} | {r['top1']:.2f} | {dtop} | {r['macs_per_image'] / 1e9:.3f} | "
            f"{100 * r['train_macs_saving']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def _steady_time(run: dict) -> float:
    return run["wall_time_s"] - run["compile_time_s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=DEFAULT, help="name:seed pairs; names: " + ", ".join(RUNS))
    p.add_argument("--model", default="deit_tiny_patch16_224")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--ratio-levels", type=int, default=3)
    p.add_argument("--example-updates", type=int, default=3)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--run-timeout", type=float, default=None, help="seconds before a run is abandoned")
    p.add_argument("--cold-cache", action="store_true", help="empty inductor and Triton caches for every run")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench"))
    p.add_argument("--out", default=str(RESULTS / "gpu_training.json"))
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    out = Path(args.out)
    settings = {"gpu": torch.cuda.get_device_name(), "model": args.model, "epochs": args.epochs,
                "batch_size": args.batch_size, "compiled": args.compile, "ratio_levels": args.ratio_levels,
                "cold_cache": args.cold_cache}  # fmt: skip
    result = json.loads(out.read_text()) if out.exists() else {}
    if {k: result.get(k) for k in settings} != settings:  # other settings: start afresh
        result = {**settings, "runs": []}
    for spec in args.runs:
        name, _, seed = spec.partition(":")
        if name not in RUNS:
            print(f"error: unknown run {name!r}; choose from {', '.join(RUNS)}", file=sys.stderr)
            return 2
        try:
            run = train(name, int(seed or 0), args)
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
            print(f"run {spec} failed: {e}", file=sys.stderr)
            continue
        result["runs"] = [r for r in result["runs"] if (r["name"], r["seed"]) != (run["name"], run["seed"])]
        result["runs"].append(run)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every run: partial results survive
        out.with_suffix(".md").write_text(summarise(result))
        print(json.dumps(run), flush=True)
    print(summarise(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
