"""``trilevel eval``: top-1 of a checkpoint on its run's test set, without training."""

from __future__ import annotations

import argparse
import sys

import torch

from .checkpoint import CheckpointError, load_model
from .data import DatasetError, build_data
from .distributed import DistInfo
from .evaluate import evaluate
from .run_data import RunData


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trilevel eval", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a trilevel checkpoint (e.g. runs/x/best.pt)")
    p.add_argument(
        "--ema", action="store_true", help="evaluate the EMA weights (runs trained with --model-ema)"
    )
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder, if not where the run found it")
    return p


def run(args) -> tuple[float, int]:
    """(top-1 in %, test images) at the checkpoint's final keep ratios, on the CPU."""
    model, cfg, ckpt = load_model(args.checkpoint)
    if args.ema:
        if ckpt.get("model_ema") is None:
            raise CheckpointError(f"{args.checkpoint} holds no EMA weights (trained without --model-ema)")
        try:
            model.load_state_dict(ckpt["model_ema"])
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"{args.checkpoint}: unusable EMA weights ({type(e).__name__})") from None
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    cfg.data_on_device, cfg.workers = False, 0
    size, chans = model.patch_embed.img_size[0], model.patch_embed.proj.in_channels
    train, test, *_ = build_data(cfg, size, chans)
    if test is None:
        raise DatasetError(f"{cfg.dataset} has no val/ folder to evaluate on")
    data = RunData(train, test, cfg, DistInfo(), size, chans)
    tl = ckpt["trilevel"]
    autocast = dict(device_type="cpu", enabled=False)
    return evaluate(
        model, data.test_batches(), data.test_size, (tl["token_keep"], tl["attn_keep"]), autocast
    ), len(test)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with torch.no_grad():
            top1, n = run(args)
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"top-1 {top1:.2f}% on {n} test images ({'EMA' if args.ema else 'model'} weights of {args.checkpoint})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
