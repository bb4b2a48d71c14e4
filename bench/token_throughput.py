"""Compiled training throughput of a timm ViT, dense and with the token and attention levels.

    python bench/token_throughput.py --model deit_tiny_patch16_224 --batch-size 256 \
        --runs dense token-0.7 token-0.7+attn-0.3

Steady-state training steps (forward, backward, AdamW) on random images already on the
GPU, bf16 autocast, timed with CUDA events after a warm-up that absorbs compilation. A run
is named ``dense``, ``token-R`` or ``token-R+attn-R``, optionally followed by ``:symbolic``
(model.trilevel.symbolic_counts: one graph for every token count) or ``:static`` (the
default: one graph per count). ``compile_s`` is the time of the first steps (compilation and
CUDA graph recording); runs in one process share inductor's caches, so only the first run's
figure is a cold one. Writes bench/results/token_throughput.json. Only meaningful on a GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trilevel  # noqa: E402

_NAME = re.compile(r"^(dense|token-([0-9.]+)(\+attn-([0-9.]+))?)((:[a-z]+)*)$")


def parse_run(spec: str) -> dict:
    """'token-0.7+attn-0.3:symbolic' -> {'name', 'token_keep', 'attn_keep', 'symbolic'}."""
    m = _NAME.match(spec)
    if m is None:
        raise ValueError(f"bad run {spec!r}: dense, token-R or token-R+attn-R, then :static or :symbolic")
    options = [o for o in m.group(5).split(":") if o]
    bad = [o for o in options if o not in ("static", "symbolic")]
    if bad:
        raise ValueError(f"bad option {bad[0]!r} in {spec!r}: static or symbolic")
    return {
        "name": spec,
        "token_keep": float(m.group(2)) if m.group(2) else None,
        "attn_keep": float(m.group(4)) if m.group(4) else 1.0,
        "symbolic": "symbolic" in options,
    }


def measure(model, args, img_size: int) -> tuple[float, float]:
    """(seconds of the first args.compile_steps steps, images per second after warm-up)."""
    model = model.cuda().train()
    opt = create_optimizer_v2(model, "adamw", lr=5e-4, weight_decay=0.05, fused=True)
    mode = None if args.mode == "default" else args.mode
    net = torch.compile(model, mode=mode, dynamic=False) if args.mode != "eager" else model
    x = torch.randn(args.batch_size, 3, img_size, img_size, device="cuda")
    y = torch.randint(0, model.num_classes, (args.batch_size,), device="cuda")

    def step():
        if args.mode != "eager":
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.compile_steps):
        step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(args.steps):
        step()
    end.record()
    torch.cuda.synchronize()
    return compile_s, args.batch_size * args.steps / (start.elapsed_time(end) / 1000)


def run_one(spec: dict, args) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=1000)
    if spec["token_keep"] is not None:
        trilevel.patch(model, token_keep=spec["token_keep"], attn_keep=spec["attn_keep"])
        model.trilevel.symbolic_counts = spec["symbolic"]
        model.trilevel.attention_level = spec["attn_keep"] < 1
    img_size = model.patch_embed.img_size[0]
    compile_s, ips = measure(model, args, img_size)
    return {
        "name": spec["name"],
        "img_per_s": round(ips, 1),
        "compile_s": round(compile_s, 1),
        "token_keep": spec["token_keep"] or 1.0,
        "attn_keep": spec["attn_keep"],
        "symbolic_counts": spec["symbolic"],
        "batch_size": args.batch_size,
        "compile_mode": args.mode,
        "macs_per_image": trilevel.macs_per_image(model),
        "tokens_per_stage": trilevel.tokens_per_stage(model),
    }


def add_ratios(runs: list[dict]) -> None:
    """speedup_vs_dense, and for attention-level runs attn_level_ratio: img/s against the run
    at the same token keep with R_A = 1 and the same count option."""
    dense = next((r for r in runs if r["name"] == "dense"), None)
    for r in runs:
        if dense is not None:
            r["speedup_vs_dense"] = round(r["img_per_s"] / dense["img_per_s"], 3)
        if r["attn_keep"] < 1:
            same = [
                o
                for o in runs
                if o["attn_keep"] == 1
                and o["token_keep"] == r["token_keep"]
                and o["symbolic_counts"] == r["symbolic_counts"]
            ]
            if same:
                r["attn_level_ratio"] = round(r["img_per_s"] / same[0]["img_per_s"], 3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deit_tiny_patch16_224")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--runs", nargs="+", default=["dense", "token-0.7", "token-0.7+attn-0.3"])
    p.add_argument("--mode", default="reduce-overhead", help="torch.compile mode, or 'eager'")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--compile-steps", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "token_throughput.json"))
    args = p.parse_args()
    try:
        specs = [parse_run(s) for s in args.runs]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    torch._dynamo.config.cache_size_limit = 64
    result = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "model": args.model,
        "precision": "bf16 autocast",
        "optimizer": "AdamW (fused)",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "compile_note": "compile_s: first steps of each run; runs share one process's caches",
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        try:
            result["runs"].append(run_one(spec, args))
        except Exception:  # noqa: BLE001 - one failed configuration must not lose the others
            print(f"run {spec['name']} failed:", file=sys.stderr)
            traceback.print_exc()
            continue
        finally:
            torch._dynamo.reset()
            torch.cuda.empty_cache()
        add_ratios(result["runs"])
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every run: partial results survive
        print(json.dumps(result["runs"][-1]), flush=True)
    print(f"\n{'run':32s} {'img/s':>9s} {'compile s':>9s} {'vs dense':>8s} {'R_A ratio':>9s}")
    for r in result["runs"]:
        print(
            f"{r['name']:32s} {r['img_per_s']:9.0f} {r['compile_s']:9.1f} "
            f"{r.get('speedup_vs_dense', '-')!s:>8s} {r.get('attn_level_ratio', '-')!s:>9s}"
        )
    return 0 if len(result["runs"]) == len(specs) else 1


if __name__ == "__main__":
    sys.exit(main())
