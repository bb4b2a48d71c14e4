"""One engine op as the host builds it: tensors and formats in, descriptor fields out.

One function per op kind of hls/README.md's op table. Each takes the arena tensors the op
reads and writes (:class:`~.arena.Tensor`) and the ``frac_bits`` of their manifest formats
(``f*``), and returns an :class:`Op` whose fields are exactly the ones the table names; the
shifts are the differences of formats the numpy reference (reference/ops_forward.py) rounds
with. A shift beyond the ABI's range is refused here, with the op's name, so no descriptor
the engine would stop on is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import luts
from ..package import PackageError
from ..reference.ops_forward import LN_EXTRA_FRAC, NORM_FRAC, PROB_FRAC
from .abi import abi, descriptor, split64
from .arena import Tensor

EPS_BITS = 52  # LayerNorm's eps_i must stay below 2^52 (var + eps_i below 2^53: hls/README.md)


class UnsupportedPackage(PackageError):
    """A valid model package this engine build cannot run (sizes, formats, tables)."""


@dataclass(frozen=True)
class Op:
    """One descriptor before it gets its tag: ``name`` says what it computes (a layer name)."""

    name: str
    kind: str  # opcode name of abi.h without OP_ (LINEAR, ATTENTION, ...)
    fields: dict[str, int]
    flags: tuple[str, ...] = field(default=())

    def descriptor(self, tag: int) -> np.ndarray:
        """(DESC_WORDS,) uint32, with ``tag`` echoed in err_tag if the op stops the engine."""
        return descriptor(self.kind, self.flags, tag=tag, **self.fields)


def rows(t: Tensor, start: int, count: int) -> Tensor:
    """Rows [start, start + count) of ``t`` as a tensor of their own (rows start on beats)."""
    if start < 0 or count < 1 or start + count > t.rows:
        raise ValueError(f"rows {start}..{start + count} outside a tensor of {t.rows} rows")
    return Tensor(t.addr + start * t.stride * t.dtype.itemsize, count, t.cols, t.stride, t.dtype)


def _shifts(name: str, **shifts: int) -> dict[str, int]:
    limit = abi()["abi"]["ABI_MAX_SHIFT"]
    for key, s in shifts.items():
        if abs(s) > limit:
            raise UnsupportedPackage(
                f"{name}: shift {key} = {s} is beyond the engine's +-{limit} (formats too far apart)"
            )
    return shifts


def _same(name: str, what: str, a: int, b: int) -> None:
    if a != b:
        raise ValueError(f"{name}: {what} {a} != {b}")  # a bug in the program builder, not in the package


def load_lut(table: str, knots: Tensor) -> Op:
    """Copy one table's int32 knots (1, n) on chip; they persist between starts."""
    return Op(f"lut.{table}", "LOAD_LUT", dict(X=knots.addr, N=knots.cols, P0=abi()["luts"][table.upper()]))


def patchify(name: str, image: Tensor, y: Tensor, cin: int, size: int, patch: int) -> Op:
    """image (cin * size, size) -> y (patches, cin * patch * patch), conv (cin, kh, kw) order."""
    _same(name, "image rows", image.rows, cin * size)
    _same(name, "patch width", y.cols, cin * patch * patch)
    return Op(
        name,
        "PATCHIFY",
        dict(X=image.addr, XS=image.stride, Y=y.addr, YS=y.stride, P0=cin, P1=size, P2=patch),
    )


def linear(
    name: str, x: Tensor, w: Tensor, b: Tensor | None, y: Tensor, fx: int, fw: int, fb: int | None, fy: int
) -> Op:
    """y (M, N) = requant(x (M, K) w (N, K)^T + rshift(b, fb - (fx + fw)), fx + fw - fy)."""
    _same(name, "K", x.cols, w.cols)
    _same(name, "N", y.cols, w.rows)
    _same(name, "M", y.rows, x.rows)
    fa = fx + fw
    f = dict(
        X=x.addr, XS=x.stride, W=w.addr, WS=w.stride, Y=y.addr, YS=y.stride, M=x.rows, N=w.rows, K=x.cols
    )
    f |= _shifts(name, SH0=(fb - fa) if b is not None else 0, SH1=fa - fy)
    if b is None:
        return Op(name, "LINEAR", f)
    _same(name, "bias length", b.cols, w.rows)
    return Op(name, "LINEAR", f | dict(B=b.addr), ("BIAS",))


def add(name: str, a: Tensor, b: Tensor, y: Tensor, fa: int, fb: int, fy: int) -> Op:
    """y = requant((a << (f - fa)) + (b << (f - fb)), f - fy), f = max(fa, fb); all (M, N)."""
    _same(name, "rows", a.rows, b.rows)
    _same(name, "cols", a.cols, b.cols)
    _same(name, "output rows", y.rows, a.rows)
    f = max(fa, fb)
    sh = _shifts(name, SH0=fa - f, SH1=fb - f, SH2=f - fy)
    return Op(
        name,
        "ADD",
        dict(X=a.addr, XS=a.stride, W=b.addr, WS=b.stride, Y=y.addr, YS=y.stride, M=a.rows, N=a.cols) | sh,
    )


def ln_eps(eps: float, fx: int) -> int:
    """LayerNorm's eps as the integer added to the variance (at 2 (fx + 8) fractional bits)."""
    return max(1, int(np.floor(eps * 2.0 ** (2 * (fx + LN_EXTRA_FRAC)) + 0.5)))


def layernorm(
    name: str, x: Tensor, g: Tensor, b: Tensor, y: Tensor, fx: int, fg: int, fb: int, fy: int, eps: float
) -> Op:
    """y (M, K) = layernorm(x (M, K)) gamma g + beta b; y rows may be fewer than x's (the head)."""
    _same(name, "width", x.cols, g.cols)
    _same(name, "beta width", b.cols, g.cols)
    eps_i = ln_eps(eps, fx)
    if eps_i >= 1 << EPS_BITS:
        raise UnsupportedPackage(
            f"{name}: eps {eps} at input format {fx} is 2^{eps_i.bit_length() - 1}, over the engine's 2^{EPS_BITS}"
        )
    sh = _shifts(name, SH0=fb - (NORM_FRAC + fg), SH1=NORM_FRAC + fg - fy)
    f = dict(X=x.addr, XS=x.stride, W=g.addr, B=b.addr, Y=y.addr, YS=y.stride, M=y.rows, K=x.cols)
    return Op(name, "LAYERNORM", f | sh | split64(eps_i))


def gelu(name: str, x: Tensor, y: Tensor, fx: int, fy: int) -> Op:
    """y (M, N) = gelu(x): table on [-8, 8] (SH0 into the table, SH1 out of it), pass-through (SH2) above."""
    _same(name, "shape", x.cols, y.cols)
    spec = luts.SPECS["gelu"]
    sh = _shifts(name, SH0=fx - spec.in_frac, SH1=spec.out_frac - fy, SH2=fx - fy)
    return Op(name, "GELU", dict(X=x.addr, XS=x.stride, Y=y.addr, YS=y.stride, M=x.rows, N=x.cols) | sh)


def attention(
    name: str,
    qkv: Tensor,
    ctx: Tensor,
    heads: int,
    prefix: int,
    fqkv: int,
    fctx: int,
    conn: Tensor | None = None,
    score_map: Tensor | None = None,
) -> Op:
    """ctx (M, C) = softmax(q k^T 2^-log4(D)) v per head from qkv (M, 3C).

    conn (M - prefix, n_conn) int32: patch rows attend over these keys only (SPARSE);
    score_map (M, M) int32: also write the head-summed wide probabilities (MAP).
    """
    C = ctx.cols
    _same(name, "qkv width", qkv.cols, 3 * C)
    _same(name, "rows", ctx.rows, qkv.rows)
    D = C // heads
    log4 = int(np.log2(D)) // 2
    if 4**log4 != D:
        raise UnsupportedPackage(
            f"{name}: head_dim {D} is not a power of 4 (the attention scale must be a shift)"
        )
    f = dict(X=qkv.addr, XS=qkv.stride, Y=ctx.addr, YS=ctx.stride, M=qkv.rows, N=C, P0=heads, P1=prefix)
    f |= _shifts(name, SH0=2 * fqkv + log4 - luts.SPECS["exp"].in_frac, SH1=PROB_FRAC + fqkv - fctx)
    flags: tuple[str, ...] = ()
    if conn is not None:
        _same(name, "connection rows", conn.rows, qkv.rows - prefix)
        f |= dict(AUX0=conn.addr, AS=conn.stride, P2=conn.cols)
        flags += ("SPARSE",)
    if score_map is not None:
        _same(name, "score map", score_map.rows, qkv.rows)
        _same(name, "score map", score_map.cols, qkv.rows)
        f |= dict(AUX1=score_map.addr)
        flags += ("MAP",)
    return Op(name, "ATTENTION", f, flags)


def select(
    name: str,
    score_map: Tensor,
    prefix: int,
    idx: Tensor,
    conn: Tensor | None = None,
    origin_in: Tensor | None = None,
    origin_out: Tensor | None = None,
) -> Op:
    """TA-Selector on score_map (M, M): idx (1, n_keep) kept patch slots, ascending; conn
    (n_keep, n_conn) kept keys per kept row; with origin_in (1, M - prefix) the original patch
    ids of the slots, origin_out (1, n_keep) gets the original ids of the kept ones (ORIGIN)."""
    M = score_map.rows
    n_keep = idx.cols
    f = dict(X=score_map.addr, XS=score_map.stride, Y=idx.addr, M=M, P1=prefix, P2=n_keep, P3=0)
    if conn is not None:
        _same(name, "connection rows", conn.rows, n_keep)
        f |= dict(AUX0=conn.addr, AS=conn.stride, P3=conn.cols)
    if origin_in is None:
        return Op(name, "SELECT", f)
    _same(name, "origin ids", origin_in.cols, M - prefix)
    _same(name, "kept origin ids", origin_out.cols, n_keep)
    return Op(name, "SELECT", f | dict(AUX1=origin_in.addr, AUX2=origin_out.addr), ("ORIGIN",))


def gather(name: str, x: Tensor, idx: Tensor, y: Tensor, prefix: int) -> Op:
    """y (prefix + n, K) = x[:prefix] ++ x[prefix + idx] for x (prefix + M, K), idx (1, n)."""
    _same(name, "width", x.cols, y.cols)
    _same(name, "rows", y.rows, prefix + idx.cols)
    f = dict(
        X=x.addr, XS=x.stride, AUX0=idx.addr, Y=y.addr, YS=y.stride, M=x.rows - prefix, N=idx.cols, K=x.cols
    )
    return Op(name, "GATHER", f | dict(P1=prefix))
