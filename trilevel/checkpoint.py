"""Checkpoints: written atomically, read without running code, one clear error when unusable.

A checkpoint is a dict saved with torch.save that holds only tensors and plain data
(dicts, lists, tuples, str, int, float, bool, None), so it is read with
``torch.load(weights_only=True)``: a crafted file cannot run code. Its fields:
  version        CHECKPOINT_VERSION
  config         TrainConfig.to_dict()
  model_spec     {"timm_name": str, "kwargs": dict}: rebuilds the architecture
  trilevel       {"token_keep", "attn_keep", "locations", "stat_layer"}: final ratios
  model          state_dict of the unwrapped, uncompiled model (timm's own keys)
  model_ema      state_dict of its EMA (--model-ema) or None
  optimizer, scheduler, scaler, epoch (next epoch to run), step, rng (torch, cuda, numpy
  as in :func:`trilevel.rng.capture`, python) of rank 0, rng_by_rank (every rank's, in rank
  order), ratio_schedule, example_selector (state dict or
  None), history (per-epoch log rows)
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import torch

from . import models
from .config import TrainConfig
from .patch import patch

# 2: the numpy RNG state is plain data (version 1 pickled numpy objects and needed the full unpickler)
CHECKPOINT_VERSION = 2


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, then rename: a crash or a full disk never leaves a half-written
    file, and the previous checkpoint stays until the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (OSError, RuntimeError)):  # torch reports a failed write as RuntimeError
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
            raise CheckpointError(
                f"cannot write checkpoint {path} ({reason}); the previous one is kept"
            ) from e
        raise


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, read with the weights-only unpickler and checked for its core fields."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(e)))) or _unsafe_globals(path)
        if found:
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain data ({', '.join(found)}); "
                f"refusing to unpickle it (trilevel checkpoints of version {CHECKPOINT_VERSION} hold none)"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt or not a checkpoint (UnpicklingError)") from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint ({type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a trilevel checkpoint of version {CHECKPOINT_VERSION}"
        )
    check_fields(ckpt, path, _CORE)
    return ckpt


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def _number(lo: float, hi: float):
    return lambda v: type(v) in (int, float) and math.isfinite(v) and lo < v <= hi


def _is_int(v) -> bool:
    return type(v) is int


def _is_state_dict(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()
    )


# field path -> test; what export, viz and a resumed run read from a checkpoint
_CORE = {
    "config": lambda v: isinstance(v, dict),
    "model_spec": lambda v: isinstance(v, dict),
    "model_spec.timm_name": lambda v: isinstance(v, str),
    "model_spec.kwargs": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "trilevel": lambda v: isinstance(v, dict),
    "trilevel.token_keep": _number(0.0, 1.0),
    "trilevel.attn_keep": _number(0.0, 1.0),
    "trilevel.locations": lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v),
    "trilevel.stat_layer": lambda v: v is None or _is_int(v),
    "model": _is_state_dict,
    "example_selector?": lambda v: v is None or isinstance(v, dict),
    "model_ema?": lambda v: v is None or _is_state_dict(v),
}
RESUME_FIELDS = {
    "optimizer": lambda v: isinstance(v, dict),
    "scheduler": lambda v: isinstance(v, dict),
    "epoch": lambda v: _is_int(v) and v >= 0,
    "step": lambda v: _is_int(v) and v >= 0,
    "wall_time_s": _number(-1.0, math.inf),
    "history": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
    "rng": lambda v: isinstance(v, dict),
    "rng.torch": lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8,
    "rng.cuda": lambda v: v is None or (isinstance(v, list) and all(isinstance(t, torch.Tensor) for t in v)),
    "rng.numpy": lambda v: isinstance(v, dict) and isinstance(v.get("key"), torch.Tensor),
    "rng.python": lambda v: isinstance(v, tuple) and len(v) == 3,
    "rng_by_rank?": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
}


def check_fields(ckpt: dict, path: str | Path, spec: dict) -> None:
    """CheckpointError naming the first field of ``spec`` that is missing or of the wrong kind.

    spec: {"a.b": test}; a trailing "?" marks a field that may be absent.
    """
    for name, test in spec.items():
        optional, keys = name.endswith("?"), name.rstrip("?").split(".")
        v = ckpt
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                if optional:
                    break
                raise CheckpointError(f"checkpoint {path} lacks the field {'.'.join(keys)}")
            v = v[k]
        else:
            if not test(v):
                raise CheckpointError(f"checkpoint {path}: field {'.'.join(keys)} has an unusable value")


def build_model(ckpt: dict):
    """The patched model of a checkpoint, at its final keep ratios, in eval mode, on the CPU."""
    spec = ckpt["model_spec"]
    try:
        model = models.create(spec["timm_name"], dict(spec["kwargs"]))
    except Exception as e:  # a crafted or foreign model_spec: timm raises many types
        raise CheckpointError(
            f"checkpoint's model {spec['timm_name']!r} cannot be built ({_short(e)})"
        ) from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not fit {spec['timm_name']}: {_short(e)}") from None
    tl = ckpt["trilevel"]
    try:
        patch(model, tl["token_keep"], tl["attn_keep"], tuple(tl["locations"]), tl.get("stat_layer"))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint's selector settings do not fit the model ({_short(e)})") from None
    return model.eval()


def _short(e: Exception, limit: int = 200) -> str:
    """The exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_model(path: str | Path):
    """(patched model, TrainConfig, checkpoint dict) from a checkpoint file."""
    ckpt = load_checkpoint(path)
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its training settings are unusable ({e})") from None
    return build_model(ckpt), cfg, ckpt
