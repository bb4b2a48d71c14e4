"""The backward ops and the SGD update as the host builds them (hls/README.md, "Backward ops").

Like :mod:`.ops`, one function per op kind returns an :class:`~.ops.Op` whose fields are the
ones the table names. Gradients carry no manifest format: each is a :class:`Grad`, an arena
tensor plus the slot of the format table (an int32 tensor at ``AUX3``) where the op that
writes it leaves its run-time frac_bits; ``P3`` packs the op's slots F0..F3. Static formats
(weights, activations) go into ``SH*`` fields as formats, not shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .abi import abi, split64
from .arena import Tensor
from .ops import Op, UnsupportedPackage, _same, rows


@dataclass(frozen=True)
class Grad:
    """A gradient tensor and the format-table slot that holds its frac_bits."""

    t: Tensor
    slot: int

    def rows(self, start: int, count: int) -> Grad:
        """Rows [start, start + count) of the gradient, same slot (same format)."""
        return Grad(rows(self.t, start, count), self.slot)


def slots(*ids: int) -> int:
    """P3: slots F0, F1, ... as four 8-bit fields."""
    n = abi()["abi"]["ABI_FMT_SLOTS"]
    if len(ids) > 4 or not all(0 <= i < n for i in ids):
        raise ValueError(f"format slots {ids}: at most four, each in 0..{n - 1}")
    return sum(i << (8 * k) for k, i in enumerate(ids))


def _shape(name: str, what: str, t: Tensor, shape: tuple[int, int]) -> None:
    if (t.rows, t.cols) != shape:
        raise ValueError(f"{name}: {what} is ({t.rows}, {t.cols}), not {shape}")  # a program-builder bug


def _tab(table: Tensor, *ids: int) -> dict[str, int]:
    return dict(AUX3=table.addr, P3=slots(*ids))


def ce_grad(name: str, table: Tensor, logits: Tensor, labels: Tensor, dlogits: Grad, flogits: int) -> Op:
    """dlogits (M, N) = softmax(logits) - onehot(labels (1, M) int32), at f = 15."""
    _same(name, "labels", labels.cols, logits.rows)
    f = dict(X=logits.addr, XS=logits.stride, AUX0=labels.addr, Y=dlogits.t.addr, YS=dlogits.t.stride,
             M=logits.rows, N=logits.cols, SH0=flogits)  # fmt: skip
    return Op(name, "CE_GRAD", f | _tab(table, dlogits.slot))


def linear_bwd_dx(name: str, table: Tensor, dy: Grad, w: Tensor, dx: Grad, fw: int) -> Op:
    """dx (M, K) = dy (M, N) w (N, K)."""
    _same(name, "N", dy.t.cols, w.rows)
    _same(name, "K", dx.t.cols, w.cols)
    f = dict(X=dy.t.addr, XS=dy.t.stride, W=w.addr, WS=w.stride, Y=dx.t.addr, YS=dx.t.stride, M=dy.t.rows,
             N=w.rows, K=w.cols, SH0=fw)  # fmt: skip
    return Op(name, "LINEAR_BWD_DX", f | _tab(table, dy.slot, dx.slot))


def linear_bwd_dw(name: str, table: Tensor, dy: Grad, x: Tensor, dw: Grad, db: Grad | None, fx: int) -> Op:
    """dw (N, K) = dy (M, N)^T x (M, K); db (1, N) = sum over tokens of dy (flag BIAS)."""
    _same(name, "tokens", dy.t.rows, x.rows)
    _shape(name, "dW", dw.t, (dy.t.cols, x.cols))
    f = dict(X=dy.t.addr, XS=dy.t.stride, W=x.addr, WS=x.stride, Y=dw.t.addr, YS=dw.t.stride, M=x.rows,
             N=dy.t.cols, K=x.cols, SH0=fx)  # fmt: skip
    if db is None:
        return Op(name, "LINEAR_BWD_DW", f | _tab(table, dy.slot, dw.slot))
    _same(name, "db width", db.t.cols, dy.t.cols)
    return Op(
        name, "LINEAR_BWD_DW", f | dict(B=db.t.addr) | _tab(table, dy.slot, dw.slot, db.slot), ("BIAS",)
    )


def layernorm_bwd(
    name: str,
    table: Tensor,
    dy: Grad,
    g: Tensor,
    cache_n: Tensor,
    cache_rs: Tensor,
    dx: Grad,
    dg: Grad,
    db: Grad,
    fg: int,
    fx: int,
) -> Op:
    """dx (M, K), dgamma and dbeta (1, K) from dy (M, K) and the forward's cache (n, (r, sh))."""
    _same(name, "cache rows", cache_n.rows, dy.t.rows)
    _same(name, "width", g.cols, dy.t.cols)
    f = dict(X=dy.t.addr, XS=dy.t.stride, W=g.addr, AUX0=cache_n.addr, AS=cache_n.stride, AUX1=cache_rs.addr,
             Y=dx.t.addr, YS=dx.t.stride, AUX2=dg.t.addr, B=db.t.addr, M=dy.t.rows, K=dy.t.cols, SH0=fg,
             SH1=fx)  # fmt: skip
    return Op(name, "LAYERNORM_BWD", f | _tab(table, dy.slot, dx.slot, dg.slot, db.slot))


def gelu_bwd(name: str, table: Tensor, dy: Grad, x: Tensor, dx: Grad, fx: int) -> Op:
    """dx = dy gelu'(x), all (M, N)."""
    _same(name, "shape", dy.t.cols, x.cols)
    f = dict(X=dy.t.addr, XS=dy.t.stride, W=x.addr, WS=x.stride, Y=dx.t.addr, YS=dx.t.stride, M=x.rows,
             N=x.cols, SH0=fx)  # fmt: skip
    return Op(name, "GELU_BWD", f | _tab(table, dy.slot, dx.slot))


def attention_bwd(
    name: str, table: Tensor, dctx: Grad, forward: Op, probs: Tensor, dqkv: Grad, fqkv: int
) -> Op:
    """dqkv (M, 3C) from dctx (M, C), reading qkv, the heads, prefix and connection lists from
    the ``forward`` ATTENTION op and the probabilities it stored (PROBS, ``probs``)."""
    fw = forward.fields
    _same(name, "probs", probs.addr, fw.get("AUX2", -1))
    f = dict(X=dctx.t.addr, XS=dctx.t.stride, W=fw["X"], WS=fw["XS"], AUX2=probs.addr, Y=dqkv.t.addr,
             YS=dqkv.t.stride, M=fw["M"], N=fw["N"], P0=fw["P0"], P1=fw["P1"], SH0=fqkv)  # fmt: skip
    flags: tuple[str, ...] = ()
    if "SPARSE" in forward.flags:
        f |= dict(AUX0=fw["AUX0"], AS=fw["AS"], P2=fw["P2"])
        flags = ("SPARSE",)
    return Op(name, "ATTENTION_BWD", f | _tab(table, dctx.slot, dqkv.slot), flags)


def grad_add(name: str, table: Tensor, a: Grad, b: Grad, y: Grad) -> Op:
    """y = a + b, two gradients of one tensor (the residual fork)."""
    _same(name, "rows", a.t.rows, b.t.rows)
    _same(name, "cols", a.t.cols, b.t.cols)
    f = dict(X=a.t.addr, XS=a.t.stride, W=b.t.addr, WS=b.t.stride, Y=y.t.addr, YS=y.t.stride, M=a.t.rows,
             N=a.t.cols)  # fmt: skip
    return Op(name, "GRAD_ADD", f | _tab(table, a.slot, b.slot, y.slot))


def scatter(name: str, kept: Grad, idx: Tensor, y: Grad, prefix: int) -> Op:
    """y (prefix + M, K): kept (prefix + n, K) back at the gather's rows idx (1, n), zeros elsewhere."""
    _same(name, "kept rows", kept.t.rows, prefix + idx.cols)
    _same(name, "slot", kept.slot, y.slot)  # values are copied: the format stays
    f = dict(X=kept.t.addr, XS=kept.t.stride, AUX0=idx.addr, Y=y.t.addr, YS=y.t.stride, M=y.t.rows - prefix,
             N=idx.cols, K=y.t.cols, P1=prefix)  # fmt: skip
    return Op(name, "SCATTER", f)


def grad_requant(name: str, table: Tensor, g: Grad, y: Grad) -> Op:
    """y = g in its own dynamic format."""
    f = dict(X=g.t.addr, XS=g.t.stride, Y=y.t.addr, YS=y.t.stride, M=g.t.rows, N=g.t.cols)
    return Op(name, "GRAD_REQUANT", f | _tab(table, g.slot, y.slot))


def sgd(name: str, table: Tensor, g: Grad, master: Tensor, w: Tensor, fw: int, lr_q: int) -> Op:
    """master (int32, at fw + 16) -= lr g; w = round(master) (SGD on the master copy)."""
    _shape(name, "the master copy", master, (w.rows, w.cols))
    _shape(name, "the gradient", g.t, (w.rows, w.cols))
    if lr_q < 0 or lr_q >= 1 << 47:
        raise UnsupportedPackage(f"{name}: learning rate {lr_q} / 2^24 is outside [0, 2^23)")
    f = dict(X=g.t.addr, XS=g.t.stride, AUX0=master.addr, AS=master.stride, Y=w.addr, YS=w.stride, M=w.rows,
             N=w.cols, SH0=fw)  # fmt: skip
    return Op(name, "SGD", f | split64(lr_q) | _tab(table, g.slot))
