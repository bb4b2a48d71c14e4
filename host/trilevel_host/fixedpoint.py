"""Signed 16-bit fixed point with a power-of-two scale: the one number format of the engine.

A tensor is stored as int16 ``q`` with ``frac_bits`` f; its value is ``q * 2**-f``
(f may be negative or larger than 15). Conventions, shared with the HLS C++ (docs/fixed_point.md):

- Rounding is round half up, ``floor(x + 1/2)``: ap_fixed's ``AP_RND``. A right shift by
  s > 0 with rounding is ``(a + 2**(s-1)) >> s`` with an arithmetic (flooring) shift.
- Overflow saturates to [-32768, 32767] (``AP_SAT``); it never wraps. Every saturation is
  counted per tensor in a :class:`SatStats`.
- Dot products accumulate exactly in a 48-bit accumulator (the DSP48E2 width), which
  saturates at +-(2**47 - 1); with 16-bit operands it cannot overflow below 2**17 terms.

Integers are carried as numpy int64 arrays; stored tensors hold int16-range values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WORD_BITS = 16
QMIN = -(1 << (WORD_BITS - 1))
QMAX = (1 << (WORD_BITS - 1)) - 1
ACC_BITS = 48
ACC_MAX = (1 << (ACC_BITS - 1)) - 1
FRAC_MIN, FRAC_MAX = -16, 40  # range of frac_bits a tensor may take
_EXACT_F64 = float(1 << 53)  # float64 holds every integer below this exactly


@dataclass
class SatStats:
    """Saturation counts per tensor name: {name: [saturated elements, total elements]}."""

    counts: dict[str, list[int]] = field(default_factory=dict)

    def add(self, name: str | None, saturated: int, total: int) -> None:
        if name is None:
            return
        c = self.counts.setdefault(name, [0, 0])
        c[0] += int(saturated)
        c[1] += int(total)

    def saturated(self) -> dict[str, int]:
        """Names with at least one saturated element -> count."""
        return {k: v[0] for k, v in self.counts.items() if v[0]}

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {k: {"saturated": v[0], "total": v[1]} for k, v in sorted(self.counts.items())}


def choose_frac_bits(max_abs: float, word_bits: int = WORD_BITS) -> int:
    """Largest f such that ``max_abs`` rounds into the signed word: the power-of-two format.

    A tensor whose largest magnitude is 0 gets FRAC_MAX.
    """
    qmax = (1 << (word_bits - 1)) - 1
    max_abs = float(max_abs)
    if not np.isfinite(max_abs):
        raise ValueError(f"cannot choose a format for a tensor with max |x| = {max_abs}")
    if max_abs <= 0.0:
        return FRAC_MAX
    f = (word_bits - 1) - int(np.ceil(np.log2(max_abs)))
    while f > FRAC_MIN and np.floor(max_abs * 2.0**f + 0.5) > qmax:
        f -= 1
    while f < FRAC_MAX and np.floor(max_abs * 2.0 ** (f + 1) + 0.5) <= qmax:
        f += 1
    return int(min(max(f, FRAC_MIN), FRAC_MAX))


def saturate(a: np.ndarray, stats: SatStats | None = None, name: str | None = None, bits: int = WORD_BITS):
    """Clip int64 values to the signed ``bits``-bit range, counting clipped elements."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a = np.asarray(a, dtype=np.int64)
    if stats is not None:
        stats.add(name, np.count_nonzero((a < lo) | (a > hi)), a.size)
    return np.clip(a, lo, hi)


def quantize(x, frac_bits: int, stats: SatStats | None = None, name: str | None = None) -> np.ndarray:
    """Float -> int16-range int64: round half up, saturate. ``x * 2**f`` must be exact in float64."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * 2.0**frac_bits + 0.5)
    scaled = np.clip(scaled, -_EXACT_F64, _EXACT_F64)
    return saturate(scaled.astype(np.int64), stats, name)


def dequantize(q, frac_bits: int) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * 2.0 ** (-frac_bits)


def rshift_round(a, s):
    """``a * 2**-s`` rounded half up, on int64; ``s`` may be an array, and <= 0 (a left shift)."""
    a = np.asarray(a, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if s.ndim == 0:
        s = int(s)
        if s <= 0:
            return a << -s
        return (a + (1 << (s - 1))) >> s
    pos = np.maximum(s, 1)
    right = (a + (np.int64(1) << (pos - 1))) >> pos
    left = a << np.maximum(-s, 0)
    return np.where(s > 0, right, left)


def requantize(acc, from_frac: int, to_frac: int, stats: SatStats | None = None, name: str | None = None):
    """Wide integer at ``from_frac`` -> int16 at ``to_frac`` (round half up, saturate)."""
    return saturate(rshift_round(acc, from_frac - to_frac), stats, name)


def dynamic_frac(acc, acc_frac: int) -> int:
    """Format for a gradient tensor chosen at run time from its accumulator (block floating point).

    The largest f <= FRAC_MAX such that max|acc| shifted from ``acc_frac`` to f rounds
    into int16. The engine's vector unit computes the same from the row maxima it sees.
    """
    m = int(np.max(np.abs(np.asarray(acc, dtype=np.int64)))) if np.size(acc) else 0
    if m == 0:
        return FRAC_MAX
    s = m.bit_length() - (WORD_BITS - 1)  # shift right by s leaves m below 2**15 (before rounding)
    if int(rshift_round(np.int64(m), s)) > QMAX:
        s += 1
    return int(max(FRAC_MIN, min(FRAC_MAX, acc_frac - s)))


def saturate_acc(acc, stats: SatStats | None = None, name: str | None = None):
    """Clip to the 48-bit accumulator, counting overflows under ``name + '.acc'``."""
    return saturate(acc, stats, None if name is None else name + ".acc", bits=ACC_BITS)


def matmul(a, b):
    """Exact integer matmul of int64 arrays (broadcasting like np.matmul).

    Runs as a float64 BLAS matmul when every partial sum stays below 2**53 (then each
    product and sum is an exact integer in float64, in any summation order); otherwise
    falls back to numpy's int64 matmul.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    k = a.shape[-1]
    amax = int(np.abs(a).max()) if a.size else 0
    bmax = int(np.abs(b).max()) if b.size else 0
    if k * amax * bmax < (1 << 53):
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a, b)
