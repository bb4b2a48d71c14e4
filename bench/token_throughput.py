"""Training throughput of a dense timm ViT against the token-pruned one, both compiled.

    python bench/token_throughput.py --model deit_tiny_patch16_224 --batch-size 256

Steady-state training steps (forward, backward, AdamW) on random images already on the
GPU, bf16 autocast, timed with CUDA events after a warm-up that absorbs compilation.
Writes bench/results/token_throughput.json. Only meaningful on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trilevel  # noqa: E402


def measure(model, batch_size: int, steps: int, warmup: int, mode: str | None, img_size: int) -> float:
    """Images per second over ``steps`` training steps after ``warmup`` untimed ones."""
    model = model.cuda().train()
    opt = create_optimizer_v2(model, "adamw", lr=5e-4, weight_decay=0.05, fused=True)
    net = torch.compile(model, mode=None if mode == "default" else mode, dynamic=False) if mode else model
    x = torch.randn(batch_size, 3, img_size, img_size, device="cuda")
    y = torch.randint(0, model.num_classes, (batch_size,), device="cuda")

    def step():
        if mode:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    return batch_size * steps / (start.elapsed_time(end) / 1000)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deit_tiny_patch16_224")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--token-keep", type=float, default=0.7)
    p.add_argument("--attn-keep", type=float, default=1.0, help="attention keep ratio of the pruned run")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument(
        "--modes",
        nargs="+",
        default=["reduce-overhead", "default", "eager"],
        help="torch.compile modes to measure ('eager': not compiled)",
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "token_throughput.json"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True

    runs = []
    for mode in args.modes:
        compiled = mode != "eager"
        pruned = f"token-{args.token_keep}" + (f"-attn-{args.attn_keep}" if args.attn_keep < 1 else "")
        for name in ("dense", pruned):
            torch.manual_seed(0)
            model = timm.create_model(args.model, num_classes=1000)
            if name != "dense":
                trilevel.patch(model, token_keep=args.token_keep, attn_keep=args.attn_keep)
            img_size = model.patch_embed.img_size[0]
            ips = measure(model, args.batch_size, args.steps, args.warmup, compiled and mode, img_size)
            runs.append(
                {
                    "name": name,
                    "img_per_s": round(ips, 1),
                    "batch_size": args.batch_size,
                    "compiled": compiled,
                    "compile_mode": mode if compiled else None,
                    "macs_per_image": trilevel.macs_per_image(model),
                    "tokens_per_stage": trilevel.tokens_per_stage(model),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
            del model
            torch._dynamo.reset()
            torch.cuda.empty_cache()
    for mode in args.modes:
        dense = next(
            r
            for r in runs
            if r["compile_mode"] == (mode if mode != "eager" else None) and r["name"] == "dense"
        )
        for r in runs:
            if r["compile_mode"] == dense["compile_mode"]:
                r["speedup_vs_dense"] = round(r["img_per_s"] / dense["img_per_s"], 3)
    result = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "model": args.model,
        "precision": "bf16 autocast",
        "optimizer": "AdamW (fused)",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
