"""Types and ranges of every manifest field a reader relies on (docs/model_package.md).

``check_manifest(m)`` raises :class:`SchemaError` naming the field (``model.depth``,
``weights['head.weight'].frac_bits``, ...) and what is wrong with it. It runs before any
file is touched, so nothing later meets a list where a dict belongs, a string where a
number belongs, a NaN ratio or a dimension that disagrees with the weights' shapes.

Hand-written rather than JSON Schema: the cross-field rules (dimensions that must agree,
the token counts the selector ratios imply, weight shapes that follow from the model
section) need code anyway, and the host stays numpy-only. Keys a reader does not use
(``created``, ``producer``, ``calibration``, free-text notes) are not checked; unknown keys
are allowed so that later minor additions stay readable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from . import fixedpoint as fp
from . import luts
from .reference import ops_forward
from .reference.model import LR_FRAC, MASTER_EXTRA_FRAC, keep_count

# dtypes a package may hold: plain little-endian numbers (never objects, strings or records)
ALLOWED_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    + ["float16", "float32", "float64"]
)
MAX_NDIM = 8
MAX_DIM = 1 << 31  # any one axis
MAX_ENTRIES = 1 << 16  # files, weights, golden tensors, ...
SHA256 = re.compile(r"[0-9a-f]{64}")

# What this reader's arithmetic is: a package made for another one is refused.
ARITHMETIC = {
    "word_bits": fp.WORD_BITS,
    "rounding": "half_up",
    "overflow": "saturate",
    "accumulator_bits": fp.ACC_BITS,
    "prob_frac": ops_forward.PROB_FRAC,
    "score_frac": ops_forward.SCORE_FRAC,
    "norm_frac": ops_forward.NORM_FRAC,
    "master_extra_frac": MASTER_EXTRA_FRAC,
    "lr_frac": LR_FRAC,
}


class SchemaError(ValueError):
    """A manifest field of the wrong type or out of range; the message names the field."""


Check = Callable[[object, str], None]


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(lo: int, hi: int) -> Check:
    def check(v, where):
        if type(v) is not int:  # bool is an int subclass: refused too
            raise SchemaError(f"{where} must be an integer, got {_show(v)}")
        if not lo <= v <= hi:
            raise SchemaError(f"{where} = {v} is outside [{lo}, {hi}]")

    return check


def number(lo: float, hi: float, lo_open: bool = False) -> Check:
    def check(v, where):
        if type(v) not in (int, float) or not math.isfinite(v):
            raise SchemaError(f"{where} must be a finite number, got {_show(v)}")
        if v > hi or v < lo or (lo_open and v == lo):
            raise SchemaError(f"{where} = {v} is outside {'(' if lo_open else '['}{lo}, {hi}]")

    return check


def text(*choices: str) -> Check:
    def check(v, where):
        if not isinstance(v, str):
            raise SchemaError(f"{where} must be a string, got {_show(v)}")
        if choices and v not in choices:
            raise SchemaError(f"{where} is {_show(v)}; this reader knows {', '.join(choices)}")

    return check


def nullable(inner: Check) -> Check:
    def check(v, where):
        if v is not None:
            inner(v, where)

    return check


def array(item: Check, min_len: int = 0, max_len: int = MAX_ENTRIES) -> Check:
    def check(v, where):
        if not isinstance(v, list):
            raise SchemaError(f"{where} must be a list, got {_show(v)}")
        if not min_len <= len(v) <= max_len:
            raise SchemaError(f"{where} has {len(v)} items, expected {min_len} to {max_len}")
        for i, x in enumerate(v):
            item(x, f"{where}[{i}]")

    return check


def record(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """A JSON object with these keys (more keys are allowed and ignored)."""

    def check(v, where):
        if not isinstance(v, dict):
            raise SchemaError(f"{where} must be an object, got {_show(v)}")
        for key, sub in required.items():
            if key not in v:
                raise SchemaError(f"{where} lacks {key!r}")
            sub(v[key], f"{where}.{key}")
        for key, sub in (optional or {}).items():
            if key in v:
                sub(v[key], f"{where}.{key}")

    return check


def mapping(value: Check, max_len: int = MAX_ENTRIES) -> Check:
    """A JSON object from names to values of one kind."""

    def check(v, where):
        if not isinstance(v, dict):
            raise SchemaError(f"{where} must be an object, got {_show(v)}")
        if len(v) > max_len:
            raise SchemaError(f"{where} has {len(v)} entries, more than {max_len}")
        for key, x in v.items():
            value(x, f"{where}[{key!r}]")

    return check


def _dtype(v, where):
    text()(v, where)
    if v not in ALLOWED_DTYPES:
        raise SchemaError(f"{where} is {_show(v)}, not one of {', '.join(sorted(ALLOWED_DTYPES))}")


FRAC = integer(fp.FRAC_MIN, fp.FRAC_MAX)
WIDE_FRAC = integer(fp.FRAC_MIN, fp.FRAC_MAX + MASTER_EXTRA_FRAC)  # master copies, loss gradient
SHAPE = array(integer(0, MAX_DIM), max_len=MAX_NDIM)
RATIO = number(0.0, 1.0, lo_open=True)
ARRAY_REF = {"file": text(), "dtype": _dtype, "shape": SHAPE}

SECTIONS: dict[str, Check] = {
    "model": record(
        {
            "img_size": integer(1, 1 << 14),
            "patch_size": integer(1, 1 << 10),
            "in_chans": integer(1, 64),
            "embed_dim": integer(1, 1 << 14),
            "depth": integer(1, 256),
            "num_heads": integer(1, 1 << 10),
            "head_dim": integer(1, 1 << 14),
            "mlp_hidden": integer(1, 1 << 16),
            "num_classes": integer(1, 1 << 20),
            "num_prefix_tokens": integer(1, 1),
            "num_patches": integer(1, 1 << 20),
            "ln_eps": number(0.0, 1.0, lo_open=True),
            "activation": text("gelu_erf"),
            "pool": text("token"),
        }
    ),
    "selector": record(
        {
            "locations": array(integer(0, 255), max_len=256),
            "token_keep": RATIO,
            "attn_keep": RATIO,
            "tokens_per_stage": array(integer(1, 1 << 20), min_len=1, max_len=257),
            "connections_per_stage": array(nullable(integer(1, 1 << 20)), max_len=256),
        }
    ),
    "input": record(
        {
            "layout": text("NCHW"),
            "frac_bits": FRAC,
            "scale": number(0.0, 1.0, lo_open=True),
            "mean": array(number(-1e6, 1e6), min_len=1, max_len=64),
            "std": array(number(0.0, 1e6, lo_open=True), min_len=1, max_len=64),
        }
    ),
    "arithmetic": record(
        {k: text(v) if isinstance(v, str) else integer(v, v) for k, v in ARITHMETIC.items()}
    ),
    "luts": mapping(
        record(
            {**ARRAY_REF, **{k: integer(-(1 << 10), 1 << 10) for k in ("lo", "hi", "in_frac", "step_bits")}}
        ),
        max_len=64,
    ),
    "weights": mapping(
        record({**ARRAY_REF, "dtype": text("int16"), "frac_bits": FRAC, "max_abs": number(0.0, 1e300)})
    ),
    "activations": mapping(record({"frac_bits": FRAC}, {"calib_max_abs": number(0.0, 1e300)})),
    "files": mapping(
        record(
            {"bytes": integer(0, 1 << 62), "sha256": text()},
            {"dtype": _dtype, "shape": SHAPE},
        )
    ),
}
OPTIONAL_SECTIONS: dict[str, Check] = {
    "example_subset": nullable(
        record(
            {
                **ARRAY_REF,
                "dtype": text("int64"),
                "dataset_size": integer(1, 1 << 40),
                "kept": integer(1, 1 << 40),
            }
        )
    ),
    "onnx": nullable(record({"file": text()})),
    "golden": nullable(
        record(
            {
                "samples": integer(1, 1 << 20),
                "tensors": mapping(record({**ARRAY_REF, "kind": text()}, {"frac_bits": nullable(WIDE_FRAC)})),
            }
        )
    ),
}


def check_manifest(m: dict) -> None:
    """Types and ranges of every section, then the rules that tie sections together."""
    for name, check in SECTIONS.items():
        check(m[name], name)
    for name, check in OPTIONAL_SECTIONS.items():
        if name in m:
            check(m[name], name)
    for rel, entry in m["files"].items():
        if not SHA256.fullmatch(entry["sha256"]):
            raise SchemaError(f"files[{rel!r}].sha256 is not 64 lowercase hex digits")
    _check_model(m["model"])
    _check_selector(m["model"], m["selector"])
    _check_input(m["model"], m["input"])
    _check_luts(m["luts"])
    _check_weights(m["model"], m["weights"])
    _check_activations(m["model"], m["activations"])
    subset = m.get("example_subset")
    if subset and subset["shape"] != [subset["kept"]]:
        raise SchemaError(f"example_subset: shape {subset['shape']} disagrees with kept = {subset['kept']}")


def _check_model(d: dict) -> None:
    if d["num_heads"] * d["head_dim"] != d["embed_dim"]:
        raise SchemaError(
            f"model: num_heads {d['num_heads']} x head_dim {d['head_dim']} != embed_dim {d['embed_dim']}"
        )
    if d["img_size"] % d["patch_size"]:
        raise SchemaError(
            f"model: img_size {d['img_size']} is not a multiple of patch_size {d['patch_size']}"
        )
    if (d["img_size"] // d["patch_size"]) ** 2 != d["num_patches"]:
        raise SchemaError(f"model: num_patches {d['num_patches']} != (img_size / patch_size)^2")


def _check_selector(d: dict, s: dict) -> None:
    locs = s["locations"]
    if any(b >= a for a, b in zip(locs[1:], locs)) or any(loc >= d["depth"] for loc in locs):
        raise SchemaError(f"selector.locations {locs} must increase and lie below depth {d['depth']}")
    n, tokens, conns = d["num_patches"], [d["num_patches"]], []
    for _ in locs:
        n = keep_count(n, s["token_keep"])
        tokens.append(n)
        conns.append(keep_count(n, s["attn_keep"]) if s["attn_keep"] < 1.0 else None)
    if s["tokens_per_stage"] != tokens or s["connections_per_stage"] != conns:
        raise SchemaError(
            f"selector: tokens_per_stage {s['tokens_per_stage']} / connections_per_stage "
            f"{s['connections_per_stage']} disagree with the keep ratios ({tokens} / {conns})"
        )


def _check_input(d: dict, inp: dict) -> None:
    for key in ("mean", "std"):
        if len(inp[key]) != d["in_chans"]:
            raise SchemaError(f"input.{key} has {len(inp[key])} values for {d['in_chans']} channels")


def _check_luts(section: dict) -> None:
    for name, spec in luts.SPECS.items():
        entry = section.get(name)
        if entry is None:
            raise SchemaError(f"luts lacks {name!r}")
        want = spec.to_json()
        diff = [k for k, v in want.items() if entry.get(k) != v]
        if diff:
            raise SchemaError(f"luts[{name!r}]: {', '.join(diff)} differ from this reader's table")


def expected_weight_shapes(d: dict) -> dict[str, tuple[int, ...]]:
    """timm state_dict key -> shape for the DeiT layout the engine runs."""
    c, h, k, p = d["embed_dim"], d["mlp_hidden"], d["num_classes"], d["patch_size"]
    shapes = {
        "cls_token": (1, 1, c),
        "pos_embed": (1, d["num_patches"] + 1, c),
        "patch_embed.proj.weight": (c, d["in_chans"], p, p),
        "patch_embed.proj.bias": (c,),
        "norm.weight": (c,),
        "norm.bias": (c,),
        "head.weight": (k, c),
        "head.bias": (k,),
    }
    for i in range(d["depth"]):
        b = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            shapes[f"{b}.{norm}.weight"] = shapes[f"{b}.{norm}.bias"] = (c,)
        shapes[f"{b}.attn.qkv.weight"], shapes[f"{b}.attn.qkv.bias"] = (3 * c, c), (3 * c,)
        shapes[f"{b}.attn.proj.weight"], shapes[f"{b}.attn.proj.bias"] = (c, c), (c,)
        shapes[f"{b}.mlp.fc1.weight"], shapes[f"{b}.mlp.fc1.bias"] = (h, c), (h,)
        shapes[f"{b}.mlp.fc2.weight"], shapes[f"{b}.mlp.fc2.bias"] = (c, h), (c,)
    return shapes


def _check_weights(d: dict, weights: dict) -> None:
    expected = expected_weight_shapes(d)
    extra = sorted(set(weights) - set(expected))
    if extra:  # e.g. the blocks of a deeper model than the model section says
        raise SchemaError(f"weights has {extra[0]!r}, which the model section does not imply")
    for name, shape in expected.items():
        entry = weights.get(name)
        if entry is None:
            raise SchemaError(f"weights lacks {name!r}, which the model section implies")
        if tuple(entry["shape"]) != shape:
            raise SchemaError(
                f"weights[{name!r}].shape {entry['shape']} != {list(shape)} from the model section"
            )


def activation_names(depth: int) -> list[str]:
    """The activation formats the reference reads (trilevel_host.reference.model)."""
    names = ["input", "patch_embed.out", "embed.out", "norm.out", "head.out"]
    for i in range(depth):
        names += [
            f"blocks.{i}.{n}"
            for n in (
                "norm1.out",
                "attn.qkv.out",
                "attn.ctx",
                "attn.proj.out",
                "resid1.out",
                "norm2.out",
                "mlp.fc1.out",
                "mlp.act.out",
                "mlp.fc2.out",
                "out",
            )
        ]
    return names


def _check_activations(d: dict, activations: dict) -> None:
    for name in activation_names(d["depth"]):
        if name not in activations:
            raise SchemaError(f"activations lacks {name!r}")


def data_bytes(dtype: str, shape: list[int]) -> int:
    """Bytes of the data of an array of this dtype and shape (no header)."""
    return int(np.dtype(dtype).itemsize) * math.prod(shape)
