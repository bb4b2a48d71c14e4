"""Golden vectors: what the bit-accurate reference computes for a few samples.

Forward, per sample (leading axis S): the input, every layer's output (names of
``trilevel_host.reference.model``), the kept-token indices (original patch ids) and the
connection lists at each selector. Training, one SGD step on the first sample: the loss
gradient, every weight gradient with its run-time format, and every updated weight (int16
and its int32 master copy). The float PyTorch logits are written beside, for comparison.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from trilevel_host import fixedpoint as fp
from trilevel_host.reference.model import MASTER_EXTRA_FRAC

GOLDEN_LR = 0.01


def _values(arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.min(initial=0) < fp.QMIN or arr.max(initial=0) > fp.QMAX:
        raise ValueError("a golden tensor holds values outside int16")
    return arr.astype(np.int16)


def write_golden(pkg, ref, model, images: torch.Tensor, labels: torch.Tensor, lr: float = GOLDEN_LR) -> dict:
    """Write golden/*.npy into ``pkg`` (a PackageDir); returns the manifest's ``golden`` section."""
    tensors: dict[str, dict] = {}

    def save(name: str, arr, frac: int | None, kind: str):
        rel = f"golden/{name}.npy"
        if kind == "index":
            data = np.asarray(arr).astype(np.int32)
        elif kind in ("float", "master"):
            data = np.asarray(arr).astype(np.float32 if kind == "float" else np.int32)
        else:
            data = _values(arr)
        entry = pkg.save(rel, data)
        tensors[name] = {**entry, "kind": kind, **({"frac_bits": frac} if frac is not None else {})}

    x = ref.quantize_input(images.numpy())
    fwd = ref.forward(x, trace=True)
    for name, arr in fwd.trace.items():
        if name.endswith((".keep_idx", ".connections")):
            save("forward/" + name, arr, None, "index")
        else:
            save("forward/" + name, arr, ref.afmt[name], "activation")
    with torch.no_grad():
        save("float_logits", model(images).numpy().astype(np.float32), None, "float")
    save("labels", labels.numpy(), None, "index")

    step = copy.deepcopy(ref)
    _, grads = step.train_step(x[:1], labels.numpy()[:1], lr)
    for name, (g, f) in grads.items():
        save(f"train/grad/{name}", g, f, "gradient")
    for name in step.w:
        save(f"train/updated/{name}", step.w[name], step.wfmt[name], "weight")
        save(f"train/master/{name}", step.master[name], step.wfmt[name] + MASTER_EXTRA_FRAC, "master")
    return {
        "samples": int(len(images)),
        "train_step": {
            "sample": 0,
            "lr": lr,
            "optimizer": "sgd",
            "loss": "cross_entropy (sum over the batch)",
        },
        "saturations": fwd.stats.saturated(),
        "tensors": tensors,
    }
