"""The testbench's named test vectors: a smoke program and a table of bad inputs.

Every case holds whether an op is implemented or still the placeholder that answers
BAD_OPCODE (its header's first line says NOT IMPLEMENTED YET): a vector written before the
op exists accepts BAD_OPCODE, one written after requires the op's own answer.

- SMOKE: load the lookup tables, NOPs, and refusals every engine gives (unknown opcode,
  shift out of range, a table outside the arena, a program outside the arena).
- BASES: one valid descriptor per op (after the five table loads). The op runs; its inputs,
  the tables and the program must be left as they were.
- BAD_DESCRIPTORS: a base descriptor with one field made wrong. The op must refuse it with
  the listed status and leave the whole arena untouched. Add a bad input as one line.
- BAD_PROGRAMS: the descriptor list itself is wrong.

Used by hls/tools/write_tb_vectors.py (for Vitis HLS C simulation and co-simulation) and by
the tests (the testbench under AddressSanitizer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from trilevel_host import luts
from trilevel_host.engine.abi import abi, config
from trilevel_host.engine.tb_vectors import ProgramBuilder, Vector, status_codes

ROOT = Path(__file__).resolve().parents[2]
OPS_DIR = ROOT / "hls" / "include" / "ops"
LUT_NAMES = ("exp", "gelu", "gelu_grad", "recip", "rsqrt")
PLACEHOLDER_MARK = "NOT IMPLEMENTED YET"
CFG = config()
WIDEST = max(CFG["MAX_K"], CFG["MAX_OUT"], CFG["MAX_HIDDEN"], CFG["MAX_DIM"])  # over every width maximum
ALLOC_LIMIT = 4096  # rows or columns beyond this are not allocated (no tensor could hold them)
PAST_END = "past_end"  # address field value: the first byte after the arena
MISALIGNED = "misaligned"  # address field value: the base tensor's address + 2 bytes
HEADER = {"LOAD_LUT": "lut_load.h"}  # op name -> header, where not <name>.h


def implemented(op: str) -> bool:
    """False while hls/include/ops/<op>.h is the placeholder that answers BAD_OPCODE."""
    header = OPS_DIR / HEADER.get(op, op.lower() + ".h")
    first = header.read_text().splitlines()[0]
    return PLACEHOLDER_MARK not in first


# ---- tensors of each op, as functions of the descriptor's fields (hls/README.md's op table)


@dataclass(frozen=True)
class T:
    """A tensor an op touches: address field, shape from the fields, stride field, output or input."""

    addr: str
    shape: Callable[[dict], tuple[int, int]]
    stride: str | None = None
    dtype: type = np.int16
    output: bool = False
    fill: str = "random"  # random, or "index": valid indices below fields["M"]


@dataclass(frozen=True)
class OpBase:
    fields: dict[str, int]
    tensors: tuple[T, ...]
    flags: tuple[str, ...] = ()


F12 = 12  # every fixed-point format of the bases: 12 fractional bits
BASES: dict[str, OpBase] = {
    "LOAD_LUT": OpBase(
        dict(N=luts.SPECS["exp"].n_knots, P0=abi()["luts"]["EXP"]),
        (T("X", lambda f: (1, f["N"]), dtype=np.int32),),
    ),
    "LINEAR": OpBase(
        dict(M=4, N=8, K=8, SH0=0, SH1=F12),
        (
            T("X", lambda f: (f["M"], f["K"]), "XS"),
            T("W", lambda f: (f["N"], f["K"]), "WS"),
            T("B", lambda f: (1, f["N"])),
            T("Y", lambda f: (f["M"], f["N"]), "YS", output=True),
        ),
        ("BIAS",),
    ),
    "ADD": OpBase(
        dict(M=4, N=8, SH0=0, SH1=0, SH2=0),
        (
            T("X", lambda f: (f["M"], f["N"]), "XS"),
            T("W", lambda f: (f["M"], f["N"]), "WS"),
            T("Y", lambda f: (f["M"], f["N"]), "YS", output=True),
        ),
    ),
    "GELU": OpBase(
        dict(M=4, N=8, SH0=F12 - 14, SH1=16 - F12, SH2=0),
        (T("X", lambda f: (f["M"], f["N"]), "XS"), T("Y", lambda f: (f["M"], f["N"]), "YS", output=True)),
    ),
    "LAYERNORM": OpBase(
        dict(M=4, K=8, SH0=F12 - (14 + F12), SH1=14, E0=1, E1=0),
        (
            T("X", lambda f: (f["M"], f["K"]), "XS"),
            T("W", lambda f: (1, f["K"])),
            T("B", lambda f: (1, f["K"])),
            T("Y", lambda f: (f["M"], f["K"]), "YS", output=True),
        ),
    ),
    # one head of 64 channels (a power of 4), [CLS] + 7 patches; qkv and ctx at 12 fractional bits
    "ATTENTION": OpBase(
        dict(M=8, N=64, P0=1, P1=1, SH0=2 * F12 + 3 - 14, SH1=15),
        (
            T("X", lambda f: (f["M"], 3 * f["N"]), "XS"),
            T("Y", lambda f: (f["M"], f["N"]), "YS", output=True),
        ),
    ),
    # [CLS] + 7 patches: keep 4 patches, 2 connections each
    "SELECT": OpBase(
        dict(M=8, P1=1, P2=4, P3=2),
        (
            T("X", lambda f: (f["M"], f["M"]), "XS", dtype=np.int32),
            T("Y", lambda f: (1, f["P2"]), dtype=np.int32, output=True),
            T("AUX0", lambda f: (f["P2"], f["P3"]), "AS", dtype=np.int32, output=True),
        ),
    ),
    # [CLS] + 6 patches -> [CLS] + 4 of them
    "GATHER": OpBase(
        dict(M=6, N=4, K=8, P1=1),
        (
            T("X", lambda f: (f["P1"] + f["M"], f["K"]), "XS"),
            T("AUX0", lambda f: (1, f["N"]), dtype=np.int32, fill="index"),
            T("Y", lambda f: (f["P1"] + f["N"], f["K"]), "YS", output=True),
        ),
    ),
    # one 16x16 channel cut into four 8x8 patches (M and N say so too, for an op that checks them)
    "PATCHIFY": OpBase(
        dict(P0=1, P1=16, P2=8, M=4, N=64),
        (
            T("X", lambda f: (f["P0"] * f["P1"], f["P1"]), "XS"),
            T("Y", lambda f: ((f["P1"] // max(f["P2"], 1)) ** 2, f["P0"] * f["P2"] ** 2), "YS", output=True),
        ),
    ),
}
OPS = tuple(BASES)


def _fit(n: int) -> int:
    """Rows/columns to allocate for a size field: the size itself where a tensor can hold it."""
    return n if 0 < n <= ALLOC_LIMIT else 1


def _with_luts(p: ProgramBuilder) -> None:
    for i, name in enumerate(LUT_NAMES):
        knots = luts.table(name)
        t = p.tensor(f"lut.{name}", knots.reshape(1, -1), dtype=np.int32)
        p.op("LOAD_LUT", X=t.addr, N=knots.size, P0=i)


def op_program(op: str, change: dict | None = None, seed: int = 0):
    """The five table loads, then one ``op`` descriptor: its base with ``change`` applied.

    ``change`` maps descriptor fields to values (an int, PAST_END or MISALIGNED) and
    ``"@<tensor>"`` to a value every element of that tensor is set to. Tensors are laid out
    for the changed sizes. Returns (builder, arena, program offset, the op's tag, the names
    of the tensors the op only reads).
    """
    base = BASES[op]
    change = dict(change or {})
    fills = {k[1:]: change.pop(k) for k in list(change) if k.startswith("@")}
    f = {**base.fields, **{k: v for k, v in change.items() if isinstance(v, int)}}
    rng = np.random.default_rng(seed)
    p = ProgramBuilder()
    _with_luts(p)
    fields = dict(f)
    inputs = [f"lut.{n}" for n in LUT_NAMES]
    for t in base.tensors:
        rows, cols = (_fit(n) for n in t.shape(f))
        if t.addr in fills:
            values = np.full((rows, cols), fills[t.addr])
        elif t.output:
            values = np.zeros((rows, cols))
        elif t.fill == "index":
            values = rng.integers(0, max(f["M"], 1), (rows, cols))
        elif t.dtype == np.int32:
            values = rng.integers(0, 1 << 20, (rows, cols))
        else:
            values = rng.integers(-512, 512, (rows, cols))
        tensor = p.tensor(t.addr, values.astype(t.dtype), dtype=t.dtype)
        fields[t.addr] = tensor.addr
        if t.stride:
            fields[t.stride] = tensor.stride
        if not t.output:
            inputs.append(t.addr)
    for k, v in change.items():
        if v == MISALIGNED:
            fields[k] += 2
        elif isinstance(v, int):
            fields[k] = v
    p.op(op, base.flags, **{k: 0 if change.get(k) == PAST_END else v for k, v in fields.items()})
    arena, prog = p.build()
    words = arena.view(np.uint32)  # the arena's size is known only now: patch PAST_END fields in
    for k, v in change.items():
        if v == PAST_END:
            words[(prog + (len(p.descs) - 1) * abi()["abi"]["DESC_BYTES"]) // 4 + abi()["desc_words"][k]] = (
                arena.size
            )
    return p, arena, prog, len(p.descs), inputs


def base_vector(op: str) -> Vector:
    """The op's valid base descriptor: DONE (BAD_OPCODE while a placeholder); inputs untouched."""
    p, arena, prog, tag, inputs = op_program(op)
    ok = implemented(op)
    vec = Vector(
        f"base_{op.lower()}", arena, prog, tag, status_codes("DONE" if ok else "BAD_OPCODE"), 0 if ok else tag
    )
    for name in [*inputs, "program"]:
        t = p.arena.tensors[name]
        vec.expect(t.addr, arena[t.addr : t.addr + t.nbytes])
    return vec


@dataclass(frozen=True)
class Bad:
    """A base descriptor of ``op`` with ``change`` applied must be refused with one of ``status``."""

    name: str
    op: str
    change: dict
    status: str | tuple[str, ...]

    def vector(self) -> Vector:
        p, arena, prog, tag, _ = op_program(self.op, self.change)
        wanted = (self.status,) if isinstance(self.status, str) else self.status
        if not implemented(self.op):
            wanted = ("BAD_OPCODE",)
        vec = Vector(self.name, arena, prog, tag, status_codes(*wanted), tag)
        vec.expect_unchanged()
        return vec


M = CFG["MAX_TOKENS"]
SIZE_OR_ADDRESS = ("BAD_SIZE", "BAD_ADDRESS")  # no tensor can hold the size: either check may come first
SIZE_OR_PARAM = ("BAD_SIZE", "BAD_PARAM")  # a size that is also a parameter (heads, channels, patch)
ROW_OPS = ("LINEAR", "ADD", "GELU", "LAYERNORM", "ATTENTION", "SELECT", "GATHER")
STRIDED = ("LINEAR", "ADD", "GELU", "LAYERNORM", "ATTENTION", "SELECT", "GATHER", "PATCHIFY")

BAD_DESCRIPTORS: list[Bad] = [
    # sizes over the configured maxima (tensors laid out large enough: only the size is wrong)
    Bad("linear_rows_over_max", "LINEAR", {"M": M + 1}, "BAD_SIZE"),
    Bad("linear_outputs_over_max", "LINEAR", {"N": CFG["MAX_OUT"] + 1}, "BAD_SIZE"),
    Bad("linear_k_over_max", "LINEAR", {"K": CFG["MAX_K"] + 1}, "BAD_SIZE"),
    Bad("add_rows_over_max", "ADD", {"M": M + 1}, "BAD_SIZE"),
    Bad("add_cols_over_max", "ADD", {"N": WIDEST + 1}, "BAD_SIZE"),
    Bad("gelu_rows_over_max", "GELU", {"M": M + 1}, "BAD_SIZE"),
    Bad("gelu_cols_over_max", "GELU", {"N": WIDEST + 1}, "BAD_SIZE"),
    Bad("layernorm_rows_over_max", "LAYERNORM", {"M": M + 1}, "BAD_SIZE"),
    Bad("layernorm_width_over_max", "LAYERNORM", {"K": WIDEST + 1}, "BAD_SIZE"),
    Bad("attention_tokens_over_max", "ATTENTION", {"M": M + 1}, "BAD_SIZE"),
    Bad("attention_width_over_max", "ATTENTION", {"N": CFG["MAX_DIM"] + 64}, SIZE_OR_PARAM),
    Bad("attention_heads_over_max", "ATTENTION", {"P0": CFG["MAX_HEADS"] + 1}, SIZE_OR_PARAM),
    Bad("attention_no_heads", "ATTENTION", {"P0": 0}, SIZE_OR_PARAM),
    Bad("select_tokens_over_max", "SELECT", {"M": M + 1}, "BAD_SIZE"),
    Bad("select_keeps_more_than_patches", "SELECT", {"P2": 8}, SIZE_OR_PARAM),
    Bad("gather_rows_over_max", "GATHER", {"N": M + 1}, "BAD_SIZE"),
    Bad("gather_index_out_of_range", "GATHER", {"@AUX0": 6}, "BAD_INDEX"),
    Bad("gather_negative_index", "GATHER", {"@AUX0": -1}, "BAD_INDEX"),
    Bad("patchify_channels_over_max", "PATCHIFY", {"P0": CFG["MAX_CIN"] + 1}, SIZE_OR_PARAM),
    Bad("patchify_image_over_max", "PATCHIFY", {"P1": CFG["MAX_IMG"] + 16}, SIZE_OR_PARAM),
    Bad(
        "patchify_patch_over_max",
        "PATCHIFY",
        {"P1": 2 * CFG["MAX_PATCH"] + 2, "P2": CFG["MAX_PATCH"] + 1},
        SIZE_OR_PARAM,
    ),
    Bad("lut_unknown_table", "LOAD_LUT", {"P0": abi()["luts"]["COUNT"]}, "BAD_PARAM"),
    Bad("lut_wrong_knot_count", "LOAD_LUT", {"N": luts.SPECS["exp"].n_knots - 1}, "BAD_SIZE"),
    # zero and absurd sizes
    *[Bad(f"{op.lower()}_zero_rows", op, {"M": 0}, SIZE_OR_ADDRESS) for op in ROW_OPS],
    *[Bad(f"{op.lower()}_rows_2e32", op, {"M": 0xFFFFFFFF}, SIZE_OR_ADDRESS) for op in ROW_OPS],
    # addresses outside the arena, misaligned, wrapping around 2^32; strides shorter than a row
    *[Bad(f"{op.lower()}_x_past_end", op, {"X": PAST_END}, "BAD_ADDRESS") for op in OPS],
    *[Bad(f"{op.lower()}_x_misaligned", op, {"X": MISALIGNED}, "BAD_ADDRESS") for op in OPS],
    *[Bad(f"{op.lower()}_y_wraps", op, {"Y": 0xFFFFFFF0}, "BAD_ADDRESS") for op in STRIDED],
    *[
        Bad(f"{op.lower()}_x_stride_short", op, {"XS": 0}, "BAD_ADDRESS")
        for op in STRIDED
        if op != "PATCHIFY"
    ],
    Bad(
        "patchify_x_stride_short", "PATCHIFY", {"XS": 0}, ("BAD_ADDRESS", "BAD_PARAM")
    ),  # XS is also P1 padded
]


def _nop_program(with_luts: bool, n_nops: int = 1) -> ProgramBuilder:
    p = ProgramBuilder()
    if with_luts:
        _with_luts(p)
    for _ in range(n_nops):
        p.op("NOP")
    return p


def _unchanged(name: str, p: ProgramBuilder, status: str, err_tag: int) -> Vector:
    """The whole program runs (or stops with ``status`` at ``err_tag``) and writes nothing."""
    arena, prog = p.build()
    vec = Vector(name, arena, prog, len(p.descs), status_codes(status), err_tag)
    vec.expect_unchanged()
    return vec


def _unknown_opcode() -> Vector:
    p = _nop_program(True)
    p.op("NOP")[0] = 250  # no such opcode: the walk stops here, at tag 7
    p.op("NOP")
    return _unchanged("unknown_opcode", p, "BAD_OPCODE", 7)


def _bad_shift() -> Vector:
    p = _nop_program(False)
    p.op("NOP", SH1=abi()["abi"]["ABI_MAX_SHIFT"] + 1)
    return _unchanged("shift_out_of_range", p, "BAD_PARAM", 2)


def _lut_outside() -> Vector:
    p = _nop_program(False)
    p.op("LOAD_LUT", X=1 << 30, N=luts.SPECS["exp"].n_knots, P0=0)
    return _unchanged("lut_outside_arena", p, "BAD_ADDRESS", 2)


SMOKE: dict[str, Callable[[], Vector]] = {
    "luts_and_nops": lambda: _unchanged("luts_and_nops", _nop_program(True, 3), "DONE", 0),
    "unknown_opcode": _unknown_opcode,
    "shift_out_of_range": _bad_shift,
    "lut_outside_arena": _lut_outside,
}

# name -> (program offset, length) from the arena of a one-NOP program followed by 256 spare bytes
BAD_PROGRAMS: dict[str, Callable[[np.ndarray], tuple[int, int]]] = {
    "program_past_end": lambda a: (a.size, 1),
    "program_runs_past_end": lambda a: (a.size - 16, 1),
    "program_misaligned": lambda a: (8, 1),
    "program_empty": lambda a: (0, 0),
    "program_too_long": lambda a: (0, CFG["MAX_DESCRIPTORS"] + 1),
    "program_wraps": lambda a: (0xFFFFFF80, 1),
}


def bad_program_vector(name: str) -> Vector:
    p = _nop_program(False)
    arena, _ = p.build(spare_bytes=256)
    prog, n = BAD_PROGRAMS[name](arena)
    vec = Vector(name, arena, prog, n, status_codes("BAD_PROGRAM"), 0)
    vec.expect_unchanged()
    return vec


def all_cases() -> dict[str, Callable[[], Vector]]:
    """Every named vector: smoke, one base per op, the bad descriptors and the bad programs."""
    cases: dict[str, Callable[[], Vector]] = dict(SMOKE)
    cases.update({f"base_{op.lower()}": (lambda op=op: base_vector(op)) for op in OPS})
    cases.update({b.name: b.vector for b in BAD_DESCRIPTORS})
    cases.update({n: (lambda n=n: bad_program_vector(n)) for n in BAD_PROGRAMS})
    assert len(cases) == len(SMOKE) + len(OPS) + len(BAD_DESCRIPTORS) + len(BAD_PROGRAMS), (
        "duplicate case names"
    )
    return cases
