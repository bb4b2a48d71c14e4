"""Tri-Level training loop: the DeiT recipe through timm, the three levels, DDP via torchrun.

The loop is here (Trainer.train_epoch, Trainer.fit); the rest is one concern per file:
run_data (batches, epoch order, sharded test set), recipe (optimizer, schedules, mixup),
evaluate, saver (last.pt, best.pt), run_metrics (metrics.json), rng, checkpoint.

    trilevel train --model deit_tiny_patch16_224 --dataset fashion-mnist --img-size 224 \
        --preset trilevel-0.7 --epochs 30 --compile
    torchrun --nproc_per_node=2 -m trilevel.train ...   (same flags)

Writes into --output: log.csv / log.json (one row per epoch), curves.png, last.pt (every
epoch; the run resumes from it) and metrics.json at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from timm.utils import ModelEmaV3
from tqdm import tqdm

from . import distributed as dist_utils
from . import models, recipe
from .checkpoint import RESUME_FIELDS, CheckpointError, check_fields, load_checkpoint
from .config import TrainConfig
from .data import IN_MEMORY, build_data
from .evaluate import evaluate
from .macs import macs_per_image
from .patch import patch
from .report import write_atomic, write_curves, write_log
from .rng import capture, restore, seed_everything
from .run_data import RunData
from .run_metrics import final_metrics
from .saver import CheckpointSaver
from .selection import keep_count
from .tensorboard_log import TensorBoardLog
from .validate import (
    NonFiniteLoss,
    check_classes,
    check_finite_loss,
    check_model_input,
    prepare_output,
    set_aside_previous_run,
)


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int):
    in_chans = cfg.in_chans or (in_chans if cfg.model in models.PRESETS else 3)
    timm_name, kwargs = models.resolve(
        cfg.model,
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=cfg.img_size,
        drop_path_rate=cfg.drop_path,
    )
    model = models.create(timm_name, kwargs)
    check_model_input(model.patch_embed.img_size[0], model.patch_embed.patch_size[0])
    depth = len(model.blocks)
    cfg.locations = tuple(cfg.locations) if cfg.locations is not None else models.default_locations(depth)
    stat_layer = None
    if cfg.example_keep < 1.0 or cfg.example_method == "forgetting":
        stat_layer = cfg.example_stat_layer if cfg.example_stat_layer is not None else depth - 1
    patch(model, token_keep=1.0, attn_keep=1.0, locations=cfg.locations, stat_layer=stat_layer)
    return model, {"timm_name": timm_name, "kwargs": kwargs}


def load_initial_weights(model, path: str) -> None:
    """Fine-tuning: the weights of a trilevel checkpoint (read weights-only); a head of
    another size is left as initialised, every other tensor must fit."""
    weights = load_checkpoint(path)["model"]
    own = model.state_dict()
    head = [k for k in weights if k.startswith("head.") and k in own and weights[k].shape != own[k].shape]
    for k in head:
        del weights[k]
    try:
        model.load_state_dict(weights, strict=not head)
    except RuntimeError as e:
        raise CheckpointError(
            f"--initial-checkpoint {path} does not fit the model: {str(e).splitlines()[0]}"
        ) from None


class Trainer:
    """One training run: its model, data, recipe and state. Each concern lives in its own
    file (run_data, recipe, evaluate, saver, run_metrics); the loop is :meth:`train_epoch`
    and :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, info: dist_utils.DistInfo):
        self.cfg, self.info, self.device = cfg, info, info.device
        # Per-rank randomness (drop-path masks, mixup, augmentation) must differ between ranks,
        # so the global streams are seeded with seed + rank. Draws every rank must share (the
        # epoch order, the example subset) use their own generators seeded by cfg.seed alone.
        seed_everything(cfg.seed + info.rank)

        if cfg.dataset in IN_MEMORY:
            train, test, n_cls, in_chans, mean, std = build_data(cfg)
        else:  # ImageFolder: the model decides the input size
            probe, _ = build_model(cfg, 1000, 3)
            img, chans = probe.patch_embed.img_size[0], probe.patch_embed.proj.in_channels
            train, test, n_cls, in_chans, mean, std = build_data(cfg, img, chans)
        num_classes = check_classes(cfg.num_classes, n_cls)
        self.model, self.model_spec = build_model(cfg, num_classes, in_chans)
        if cfg.initial_checkpoint is not None:
            load_initial_weights(self.model, cfg.initial_checkpoint)
        self.model.to(self.device)
        self.state = self.model.trilevel
        img_size, in_chans = self.model.patch_embed.img_size[0], self.model.patch_embed.proj.in_channels
        self.data_info = {"mean": list(mean), "std": list(std), "num_classes": num_classes}
        self.data = RunData(train, test, cfg, info, img_size, in_chans)
        self.num_train = self.data.num_train

        global_batch = cfg.batch_size * info.world_size
        subset = keep_count(self.num_train, cfg.example_keep)
        if subset < global_batch:
            raise ValueError(
                f"the training subset ({subset} examples) is smaller than one batch ({global_batch})"
            )
        self.selector = self._build_selector()
        self.peak_lr = recipe.peak_lr(cfg, global_batch)
        steps = [self.data.steps(self._epoch_size(e) // info.world_size) for e in range(cfg.epochs)]
        self.optimizer, self.scheduler = recipe.optimizer_and_schedule(
            self.model, cfg, self.peak_lr, steps, self.device
        )
        self.mixup, self.criterion = recipe.mixup_and_loss(cfg, num_classes)
        self.token_schedule, self.attn_schedule = recipe.keep_ratio_schedules(cfg)
        # timm's EMA of the weights (the paper's code keeps one); evaluated and saved beside the model.
        self.ema = ModelEmaV3(self.model, decay=cfg.model_ema_decay) if cfg.model_ema else None

        self.net = self.model
        if info.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            # One graph per distinct token count; the staircase warm-up keeps that to a few.
            torch._dynamo.config.cache_size_limit = 64
            mode = cfg.compile_mode if self.device.type == "cuda" else None
            # dynamic=False: token counts are constants of each graph. Left to automatic
            # dynamic shapes, a changed keep ratio turns them symbolic and compiles crawl.
            self.net = torch.compile(self.net, mode=mode, dynamic=False)
        self.autocast = dict(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda"
        )
        self.epoch, self.step, self.history, self.wall_offset = 0, 0, [], 0.0
        self._macs_cache: dict[tuple[float, float], int] = {}
        self._graph_keys: set[tuple[float, float]] = set()  # keep ratios compiled in this process

    def _build_selector(self):
        if self.state.stat_layer is None:
            return None
        from .example_selector import ExampleSelector

        cfg = self.cfg
        updates = ExampleSelector.schedule(
            cfg.epochs,
            cfg.example_keep,
            cfg.example_updates,
            cfg.example_first_update,
            cfg.example_update_every,
        )
        return ExampleSelector(
            self.num_train,
            cfg.example_keep,
            updates,
            method=cfg.example_method,
            seed=cfg.seed,
            device=self.device,
        )

    def _epoch_size(self, epoch: int) -> int:
        """Examples trained on in ``epoch``: the whole set, the subset, or (two-phase ablation)
        the whole set before the first update and the subset after it."""
        sel = self.selector
        if sel is None:
            return self.num_train
        if sel.method == "forgetting" and sel.update_epochs and sel.subset_size < self.num_train:
            return self.num_train if epoch < sel.update_epochs[0] else sel.subset_size
        return sel.subset_size

    # ----------------------------------------------------------------- loop
    def set_ratios(self, epoch_f: float) -> None:
        self.state.token_keep = self.token_schedule(epoch_f)
        self.state.attn_keep = self.attn_schedule(epoch_f)

    def macs(self) -> int:
        key = (self.state.token_keep, self.state.attn_keep)
        if key not in self._macs_cache:
            self._macs_cache[key] = macs_per_image(self.model)
        return self._macs_cache[key]

    def train_epoch(self, epoch: int) -> dict:
        self.net.train()
        indices = self.data.epoch_indices(epoch, self.selector)
        steps = self.data.steps(len(indices))
        loss_sum = torch.zeros((), device=self.device)
        macs_sum = 0
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not self.info.is_main,
            leave=False,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        self._sync()
        t0 = time.perf_counter()
        compile_time, compile_steps, warm_left = 0.0, 0, 0
        for i, (x, y, idx) in enumerate(_closing_bar(self.data.train_batches(indices), bar)):
            if i == steps:
                break
            self.set_ratios(epoch + i / steps)
            macs_sum += self.macs()
            key = (self.state.token_keep, self.state.attn_keep)
            if self.cfg.compile and key not in self._graph_keys:
                # A new token count compiles a graph; its first steps (compile, CUDA-graph
                # warm-up and recording) are timed apart so steady-state speed is visible.
                self._graph_keys.add(key)
                self._sync()
                warm_left, t_warm = _WARM_STEPS, time.perf_counter()
            if self.cfg.compile:  # tells CUDA-graph trees that a new iteration begins
                torch.compiler.cudagraph_mark_step_begin()
            target = y
            if self.mixup is not None:
                x, target = self.mixup(x, y)
            with torch.autocast(**self.autocast):
                logits = self.net(x)
                loss = self.criterion(logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
            self.optimizer.step()
            self.step += 1
            self.scheduler.step_update(self.step)
            if self.ema is not None:
                self.ema.update(self.model, step=self.step)
            loss_sum += loss.detach()
            if (i + 1) % _FINITE_CHECK_EVERY == 0 or i + 1 == steps:  # before any checkpoint
                try:
                    check_finite_loss(loss_sum, epoch, i + 1, self.peak_lr)
                except NonFiniteLoss:
                    bar.close()  # so the error is the last thing on the line
                    raise
            if self.selector is not None and self.selector.needs_stats:
                # Correct means the dominant label of the (mixed) image the model was shown.
                dominant = target.argmax(-1) if target.ndim == 2 else target
                self.selector.record(idx, logits.detach().argmax(-1) == dominant, self.state.last_attn_var)
            if warm_left:
                warm_left -= 1
                compile_steps += 1
                if not warm_left:
                    self._sync()
                    compile_time += time.perf_counter() - t_warm
            bar.update()
        self._sync()
        train_time = time.perf_counter() - t0
        bar.close()
        images = steps * self.cfg.batch_size * self.info.world_size
        loss = dist_utils.all_reduce_sum(loss_sum) / (steps * self.info.world_size)
        return {
            "train_loss": float(loss),
            "train_time_s": train_time,
            "img_per_s": images / train_time,
            "images": images,
            "compile_time_s": compile_time,
            "compile_images": compile_steps * self.cfg.batch_size * self.info.world_size,
            "macs_per_image": macs_sum / max(steps, 1),
            "token_keep": self.state.token_keep,
            "attn_keep": self.state.attn_keep,
        }

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, model=None) -> float | None:
        """Top-1 of ``model`` (default: the trained one) at the run's final keep ratios."""
        keep = (self.cfg.token_keep, self.cfg.attn_keep)
        return evaluate(
            model or self.model, self.data.test_batches(), self.data.test_size, keep, self.autocast
        )

    # ----------------------------------------------------------------- state
    def checkpoint_state(self) -> dict:
        """What last.pt holds; a collective under DDP (every rank's random state is gathered)."""
        rng_by_rank = dist_utils.gather_objects(capture())
        return {
            "config": self.cfg.to_dict(),
            "model_spec": self.model_spec,
            "data": self.data_info,
            "trilevel": {
                "token_keep": self.cfg.token_keep,
                "attn_keep": self.cfg.attn_keep,
                "locations": list(self.state.locations),
                "stat_layer": self.state.stat_layer,
            },
            "model": self.model.state_dict(),
            "model_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "wall_time_s": self.wall_offset,
            "history": self.history,
            "example_selector": self.selector.state_dict() if self.selector is not None else None,
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
        }

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        check_fields(ckpt, path, RESUME_FIELDS)
        ours, theirs = self.cfg.to_dict(), ckpt["config"]
        changed = [k for k in ours if k not in _RESUMABLE_CHANGES and ours[k] != theirs.get(k)]
        if ckpt["model_spec"] != self.model_spec or changed:
            raise ValueError(
                f"{path} was written by a run with other settings ({', '.join(changed) or 'model'}); "
                "use another --output or --no-resume"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            if self.ema is not None:
                self.ema.module.load_state_dict(ckpt["model_ema"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.selector is not None:
                self.selector.load_state_dict(ckpt["example_selector"])
            by_rank = ckpt.get("rng_by_rank") or [ckpt["rng"]]
            if self.info.rank < len(by_rank):  # each rank continues its own stream
                restore(by_rank[self.info.rank])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"{path} cannot be resumed ({type(e).__name__}: {e})"[:300]) from None
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.wall_offset, self.history = ckpt["wall_time_s"], ckpt["history"]

    # ----------------------------------------------------------------- run
    def fit(self, stop_after: int | None = None) -> dict:
        out = Path(self.cfg.output)
        saver = CheckpointSaver(out)
        last = saver.last
        if self.cfg.resume and last.exists():
            self.resume(last)
            if self.info.is_main:
                print(f"resumed from {last} at epoch {self.epoch}", file=sys.stderr)
        elif self.info.is_main and (aside := set_aside_previous_run(out)) is not None:
            print(f"starting afresh: the earlier run's files in {out} were moved to {aside}", file=sys.stderr)
        t_start = time.perf_counter() - self.wall_offset
        tensorboard = TensorBoardLog(out) if self.info.is_main else None
        try:
            return self._epochs(out, saver, t_start, tensorboard, stop_after)
        finally:
            if tensorboard is not None:
                tensorboard.close()

    def _epochs(self, out: Path, saver: CheckpointSaver, t_start: float, tensorboard, stop_after) -> dict:
        while self.epoch < self.cfg.epochs:
            epoch = self.epoch
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
                row["top1"] = self.evaluate()
                if self.ema is not None:
                    row["top1_ema"] = self.evaluate(self.ema.module)
            if self.selector is not None:
                update = self.selector.end_epoch(epoch)
                # Every rank's hashes, so the log shows that all ranks hold the same subset.
                row["subset_hash"] = dist_utils.gather_objects(self.selector.subset_hash())
                row["stats_hash"] = dist_utils.gather_objects(self.selector.stats_hash())
                if update:
                    row["example_update"] = update
            self.epoch = epoch + 1
            self.wall_offset = time.perf_counter() - t_start
            row["wall_time_s"] = self.wall_offset
            self.history.append(row)
            state = self.checkpoint_state()
            if self.info.is_main:
                saver.save(state, self.history)
                write_log(out, self.history)
                tensorboard.log(row)
                print(_format_row(row), file=sys.stderr)
            dist_utils.barrier()
            if stop_after is not None and self.epoch >= stop_after and self.epoch < self.cfg.epochs:
                return {}
        metrics = self.final_metrics()
        if self.info.is_main:
            write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
            write_curves(out, self.history)
        return metrics

    def final_metrics(self) -> dict:
        dense_images = self.data.steps(self.num_train // self.info.world_size) * self.cfg.batch_size
        return final_metrics(
            self.model,
            self.cfg,
            self.history,
            model_name=self.model_spec["timm_name"],
            world_size=self.info.world_size,
            dense_images_per_epoch=dense_images * self.info.world_size,
            wall_time_s=self.wall_offset,
        )


# Steps timed apart after a graph is first used: compilation, CUDA-graph warm-up, recording.
_WARM_STEPS = 3

# Steps between checks for a NaN/inf loss (each check waits for the device).
_FINITE_CHECK_EVERY = 16

# Settings that may differ between a run and its resumption. Not --compile: it chooses
# between the exact cosine and the staircase warm-up of the keep ratios.
_RESUMABLE_CHANGES = {
    "resume",
    "output",
    "workers",
    "data_dir",
    "compile_mode",
    "eval_every",
    "initial_checkpoint",
}


def _closing_bar(batches, bar):
    """The batches; the progress bar is closed when reading them fails (an unreadable image),
    so the error line starts on a line of its own."""
    try:
        yield from batches
    except Exception:
        bar.close()
        raise


def _format_row(row: dict) -> str:
    top1 = f"{row['top1']:.2f}" if row.get("top1") is not None else "-"
    compiled = f" (compiling {row['compile_time_s']:.1f}s)" if row.get("compile_time_s") else ""
    return (
        f"epoch {row['epoch']}: loss {row['train_loss']:.4f} top1 {top1} "
        f"{row['img_per_s']:.0f} img/s R_T {row['token_keep']:.3f} R_A {row['attn_keep']:.3f} "
        f"wall {row['wall_time_s']:.1f}s{compiled}"
    )


def run(cfg: TrainConfig, stop_after: int | None = None) -> dict:
    cfg.validate()
    prepare_output(cfg.output)
    info = dist_utils.setup()
    try:
        return Trainer(cfg, info).fit(stop_after=stop_after)
    finally:
        dist_utils.teardown()


if __name__ == "__main__":  # torchrun -m trilevel.train: the flags of `trilevel train`
    from trilevel.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
