"""Write a model package directory (docs/model_package.md) from a patched float model.

Everything is written into a temporary sibling directory and swapped into place at the
end, so a failed or killed export never leaves a half-written package behind, and an
earlier package at the output path stays there until the new one takes its place.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from trilevel_host import fixedpoint as fp
from trilevel_host import luts
from trilevel_host.package import FORMAT_NAME, FORMAT_VERSION, MANIFEST, sha256_file
from trilevel_host.reference import ops_forward
from trilevel_host.reference.model import LR_FRAC, MASTER_EXTRA_FRAC, ModelConfig, ReferenceModel

from . import arch
from .calibrate import activation_formats, calibrate
from .output_dir import ExportError, check_output, make_temporary_sibling, replace_dir

__all__ = ["ExportError", "PrecisionWarning", "write_package"]


class PrecisionWarning(UserWarning):
    """A tensor whose 16-bit format loses most of its values (named in the message)."""


class PackageDir:
    """A directory being filled: saves arrays and remembers every file for the manifest."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, dict] = {}

    def save(self, rel: str, arr: np.ndarray) -> dict:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = np.ascontiguousarray(arr)
        np.save(p, arr, allow_pickle=False)
        self.files[rel] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
        return {"file": rel, "dtype": str(arr.dtype), "shape": list(arr.shape)}

    def add_file(self, rel: str) -> None:
        self.files[rel] = {}

    def finish(self, manifest: dict) -> dict:
        for rel, entry in self.files.items():
            p = self.root / rel
            entry["bytes"] = p.stat().st_size
            entry["sha256"] = sha256_file(p)
        manifest["files"] = dict(sorted(self.files.items()))
        (self.root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest


# The largest magnitude a 16-bit word holds at the coarsest format the engine allows.
LARGEST_VALUE = fp.QMAX * 2.0**-fp.FRAC_MIN


def quantize_weights(model) -> tuple[dict[str, np.ndarray], dict[str, int], dict[str, float]]:
    """Every state_dict tensor -> int16 with its own power-of-two format from its max |w|.

    Refuses (ExportError naming the tensor) NaN or infinite weights and weights beyond the
    largest 16-bit value; warns (PrecisionWarning) when most non-zero values round to 0.
    """
    q, fmt, amax = {}, {}, {}
    for name, t in model.state_dict().items():
        w = t.detach().double().numpy()
        bad = int(np.count_nonzero(~np.isfinite(w)))
        if bad:
            raise ExportError(f"weight {name} holds {bad} NaN or infinite values (did the training diverge?)")
        amax[name] = float(np.abs(w).max()) if w.size else 0.0
        if amax[name] > LARGEST_VALUE:
            raise ExportError(
                f"weight {name} has max |w| = {amax[name]:.3g}, beyond the largest 16-bit fixed-point "
                f"value {LARGEST_VALUE:.3g}: it cannot be exported"
            )
        fmt[name] = fp.choose_frac_bits(amax[name])
        q[name] = fp.quantize(w, fmt[name]).astype(np.int16)
        nonzero = np.count_nonzero(w)
        lost = int(np.count_nonzero((q[name] == 0) & (w != 0)))
        if nonzero and lost > nonzero // 2:
            warnings.warn(
                f"weight {name}: {lost} of {nonzero} non-zero values round to 0 at frac_bits "
                f"{fmt[name]} (max |w| = {amax[name]:.3g})",
                PrecisionWarning,
                stacklevel=2,
            )
    return q, fmt, amax


def selector_section(cfg: ModelConfig) -> dict:
    plan = cfg.stage_plan()
    return {
        "locations": list(cfg.locations),
        "token_keep": cfg.token_keep,
        "attn_keep": cfg.attn_keep,
        "position": "after attention + residual, before the MLP",
        "score": "head-summed [CLS] attention row over patch tokens (ranks like the head mean)",
        "tie_break": "lower index first",
        "tokens_per_stage": [cfg.num_patches] + [n for n, _ in plan],
        "connections_per_stage": [c for _, c in plan],
    }


def arithmetic_section() -> dict:
    return {
        "word_bits": fp.WORD_BITS,
        "value": "int * 2**-frac_bits",
        "rounding": "half_up",
        "overflow": "saturate",
        "accumulator_bits": fp.ACC_BITS,
        "prob_frac": ops_forward.PROB_FRAC,
        "score_frac": ops_forward.SCORE_FRAC,
        "norm_frac": ops_forward.NORM_FRAC,
        "gradient_formats": "dynamic",
        "master_extra_frac": MASTER_EXTRA_FRAC,
        "lr_frac": LR_FRAC,
        "optimizer": "sgd",
    }


def model_config(model_section: dict, model) -> ModelConfig:
    """The reference's ModelConfig, built the way a reader of the manifest builds it."""
    st = model.trilevel
    selector = {
        "locations": list(st.locations),
        "token_keep": float(st.token_keep),
        "attn_keep": float(st.attn_keep),
    }
    return ModelConfig.from_manifest({"model": model_section, "selector": selector})


def example_subset(ckpt: dict) -> tuple[np.ndarray | None, int | None]:
    """(indices of the active training examples, dataset size), or (None, None) when the level is off."""
    es = ckpt.get("example_selector")
    if not es or es.get("active") is None:
        return None, None
    active = torch.as_tensor(es["active"]).bool().cpu().numpy()
    return np.flatnonzero(active).astype(np.int64), int(active.size)


def write_package(
    model,
    ckpt: dict,
    calib_images: torch.Tensor,
    output: str | Path,
    *,
    golden_images: torch.Tensor | None = None,
    golden_labels: torch.Tensor | None = None,
    onnx: bool = True,
    normalization: dict | None = None,
    calibration_info: dict | None = None,
    producer: dict | None = None,
) -> dict:
    """Write the package for ``model`` (patched, eval mode) to ``output``; returns the manifest."""
    output = check_output(output)
    model_section = arch.describe(model)
    cfg = model_config(model_section, model)
    tmp = make_temporary_sibling(output)
    try:
        manifest = _fill(
            PackageDir(tmp),
            model,
            ckpt,
            cfg,
            model_section,
            calib_images,
            golden_images,
            golden_labels,
            onnx,
            normalization or {},
            calibration_info or {},
            producer or {},
        )
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _fill(
    pkg,
    model,
    ckpt,
    cfg,
    model_section,
    calib_images,
    golden_images,
    golden_labels,
    onnx,
    norm,
    calib_info,
    producer,
) -> dict:
    qw, wfmt, wmax = quantize_weights(model)
    weights = {}
    for name, arr in qw.items():
        entry = pkg.save(f"weights/{name}.npy", arr)
        weights[name] = {**entry, "frac_bits": wfmt[name], "max_abs": wmax[name]}
    amax = calibrate(model, calib_images)
    for name, v in amax.items():
        if not math.isfinite(v):
            raise ExportError(f"activation {name} is not finite on the calibration images (max |x| = {v})")
    afmt = activation_formats(amax)
    activations = {k: {"frac_bits": afmt[k], "calib_max_abs": amax[k]} for k in sorted(afmt)}
    lut_section = {}
    for name, spec in luts.SPECS.items():
        entry = pkg.save(f"luts/{name}.npy", luts.table(name))
        lut_section[name] = {**entry, **spec.to_json()}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "producer": producer,
        "model": {"timm_name": ckpt.get("model_spec", {}).get("timm_name"), **model_section},
        "selector": selector_section(cfg),
        "input": {"layout": "NCHW", "frac_bits": afmt["input"], **norm},
        "arithmetic": arithmetic_section(),
        "calibration": {"images": int(len(calib_images)), **calib_info},
        "luts": lut_section,
        "weights": weights,
        "activations": activations,
    }
    idx, total = example_subset(ckpt)
    if idx is None:
        manifest["example_subset"] = None
    else:
        manifest["example_subset"] = {
            **pkg.save("example_subset.npy", idx),
            "dataset_size": total,
            "kept": int(idx.size),
        }
    if onnx:
        from .onnx_export import export_onnx

        manifest["onnx"] = export_onnx(model, pkg.root / "model.onnx", calib_images[:8])
        pkg.add_file("model.onnx")
    if golden_images is not None:
        from .golden import write_golden

        ref = ReferenceModel(cfg, qw, wfmt, afmt)
        manifest["golden"] = write_golden(pkg, ref, model, golden_images, golden_labels)
    else:
        manifest["golden"] = None
    return pkg.finish(manifest)
