"""Helpers for the backward-op tests: the format table, slot packing, random gradients.

A backward op reads the formats of its gradient inputs from slots of an int32 table in the
arena (descriptor field AUX3) and writes its outputs' formats to slots; ``P3`` names four
8-bit slots F0..F3 (hls/README.md, "Backward ops").
"""

from __future__ import annotations

import numpy as np
from engine_harness import Program
from trilevel_host.engine.abi import abi
from trilevel_host.reference import ops_forward as F
from trilevel_host.reference.model import keep_count

FMT_SLOTS = abi()["abi"]["ABI_FMT_SLOTS"]
FRAC_MIN = abi()["abi"]["ABI_FRAC_MIN"]
FRAC_MAX = abi()["abi"]["ABI_FRAC_MAX"]
GARBAGE = 0x5A5A  # what an output tensor holds before the op: an error must leave it there


def slots(*ids: int) -> int:
    """P3 for slots F0, F1, ... (at most four, each 0..255)."""
    assert len(ids) <= 4 and all(0 <= i < FMT_SLOTS for i in ids)
    return sum(i << (8 * k) for k, i in enumerate(ids))


def format_table(p: Program, formats: dict[int, int] | None = None, fill: int = -99):
    """Allocate the table, slots set from ``formats`` ({slot: frac_bits}); the others hold ``fill``."""
    t = np.full((1, FMT_SLOTS), fill, dtype=np.int64)
    for slot, f in (formats or {}).items():
        t[0, slot] = f
    return p.tensor("fmt", t, dtype=np.int32)


def garbage(rows: int, cols: int, dtype=np.int16) -> np.ndarray:
    return np.full((rows, cols), GARBAGE, dtype=np.int64)


def grad(rng: np.random.Generator, shape, bits: int = 15) -> np.ndarray:
    """A random int16 gradient with |values| < 2**bits (bits <= 15), int64."""
    hi = min(1 << bits, 1 << 15)
    return rng.integers(-hi, hi, size=shape, dtype=np.int64).clip(-32768, 32767)


def fmt_of(p: Program, slot: int) -> int:
    return int(p.read("fmt")[0, slot])


# ---- attention backward: probabilities in the forward's PROBS layout
def random_lists(rng, n_patches: int, n_conn: int) -> np.ndarray:
    """(n_patches, n_conn) strictly ascending patch indices per row, as the TA-Selector writes them."""
    return np.stack([np.sort(rng.choice(n_patches, n_conn, replace=False)) for _ in range(n_patches)])


def probs_rows(probs, conn, prefix: int) -> np.ndarray:
    """(H, M, M) dense-with-zeros probabilities -> the PROBS layout (H * M, M): key-list order."""
    H, M, _ = probs.shape
    out = np.zeros((H * M, M), np.int64)
    for i in range(M):
        keys = (
            np.arange(M)
            if conn is None or i < prefix
            else np.r_[np.arange(prefix), conn[i - prefix] + prefix]
        )
        out[np.arange(H) * M + i, : len(keys)] = probs[:, i, keys]
    return out


def attention_case(rng, M, C, H, prefix=1, attn_keep=None, qkv_bits=11, fqkv=12):
    qkv = grad(rng, (M, 3 * C), qkv_bits)
    conn = None
    mask = None
    if attn_keep is not None:
        conn = random_lists(rng, M - prefix, keep_count(M - prefix, attn_keep))
        mask = F.connection_mask(conn[None], prefix)
    _, probs, _ = F.attention(qkv[None], fqkv, H, 10, mask)
    return qkv, conn, probs[0]


def run_attn(dctx, fdctx, qkv, fqkv, H, probs, conn=None, prefix=1, **over):
    M, C = dctx.shape
    p = Program()
    fmt = format_table(p, {2: fdctx})
    tdo, tq = p.tensor("dctx", dctx), p.tensor("qkv", qkv)
    tp = p.tensor("probs", probs_rows(probs, conn, prefix))
    ty = p.tensor("dqkv", garbage(M, 3 * C))
    fields = dict(X=tdo.addr, W=tq.addr, AUX2=tp.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=C, XS=tdo.stride,
                  WS=tq.stride, YS=ty.stride, SH0=fqkv, P0=H, P1=prefix, P3=slots(2, 3))  # fmt: skip
    flags = ()
    if conn is not None:
        tl = p.tensor("lists", conn, dtype=np.int32)
        fields.update(AUX0=tl.addr, AS=tl.stride, P2=conn.shape[1])
        flags = ("SPARSE",)
    fields.update(over)
    p.op("ATTENTION_BWD", flags, **fields)
    return p, p.run()
