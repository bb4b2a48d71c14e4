"""metrics.json: accuracy, speed and MACs of a finished run, from its per-epoch log rows."""

from __future__ import annotations

import torch

from .config import TrainConfig
from .macs import macs_per_image, tokens_per_stage


def final_metrics(
    model,
    cfg: TrainConfig,
    history: list[dict],
    *,
    model_name: str,
    world_size: int,
    dense_images_per_epoch: int,
    wall_time_s: float,
) -> dict:
    """The run's summary. ``model``: the patched model (left at the final keep ratios);
    ``dense_images_per_epoch``: images a dense run of the same recipe trains per epoch on the
    full data (whole batches only, capped by --max-steps-per-epoch), the reference of the
    training MACs saved, so that a dense run saves exactly 0."""
    device = next(model.parameters()).device
    state = model.trilevel
    state.token_keep, state.attn_keep = cfg.token_keep, cfg.attn_keep
    inference_macs = macs_per_image(model)
    state.token_keep = state.attn_keep = 1.0
    dense_macs = macs_per_image(model)
    state.token_keep, state.attn_keep = cfg.token_keep, cfg.attn_keep
    train_images = sum(r["images"] for r in history)
    train_time = sum(r["train_time_s"] for r in history)
    compile_time = sum(r.get("compile_time_s", 0.0) for r in history)
    steady_images = train_images - sum(r.get("compile_images", 0) for r in history)
    train_macs = sum(r["macs_per_image"] * r["images"] for r in history)
    dense_train_macs = dense_macs * dense_images_per_epoch * cfg.epochs
    tops = [r["top1"] for r in history if r.get("top1") is not None]
    return {
        "model": model_name,
        "dataset": cfg.dataset,
        "epochs": cfg.epochs,
        "world_size": world_size,
        "batch_size": cfg.batch_size,
        "compiled": cfg.compile,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "top1": tops[-1] if tops else None,
        "best_top1": max(tops) if tops else None,
        "top1_ema": history[-1].get("top1_ema") if history else None,
        "wall_time_s": wall_time_s,
        "train_time_s": train_time,
        "img_per_s": train_images / train_time,
        # Steps that compiled a graph (and warmed its CUDA graph) excluded; 0 if not compiled.
        "compile_time_s": compile_time,
        "steady_img_per_s": steady_images / max(train_time - compile_time, 1e-9),
        "token_keep": cfg.token_keep,
        "attn_keep": cfg.attn_keep,
        "example_keep": cfg.example_keep,
        "locations": list(state.locations),
        "tokens_per_stage": tokens_per_stage(model),
        "macs_per_image": inference_macs,
        "dense_macs_per_image": dense_macs,
        "macs_saving": 1.0 - inference_macs / dense_macs,
        "train_macs_total": train_macs,
        "train_macs_saving": 1.0 - train_macs / dense_train_macs,
    }
