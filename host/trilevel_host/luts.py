"""Piecewise-linear lookup tables for exp, GELU, GELU', reciprocal and rsqrt.

Every table is defined by a handful of integers (:class:`PwlSpec`) and generated
deterministically from them: knot k sits at ``x_k = lo + k * 2**-step_bits`` and holds
``floor(f(x_k) * 2**out_frac + 1/2)``. The knots are stored in the model package
(``luts/<name>.npy``, int32) so the C++ reads the very same integers instead of calling
its own libm.

Evaluation, identical in C++ (input ``x`` an integer at ``in_frac`` fractional bits,
already clamped to [lo, hi]):

    u = x - lo * 2**in_frac            # >= 0
    s = in_frac - step_bits            # input LSBs per segment
    i = u >> s;  r = u & (2**s - 1)
    y = t[i] + rshift_round((t[i+1] - t[i]) * r, s)

The table has one knot beyond ``hi`` so that ``x == hi`` needs no special case.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

from .fixedpoint import rshift_round


@dataclass(frozen=True)
class PwlSpec:
    name: str
    lo: int  # domain [lo, hi] in real units (integers)
    hi: int
    in_frac: int  # fractional bits of the table's input
    step_bits: int  # segment width 2**-step_bits
    out_frac: int  # fractional bits of the table's values

    @property
    def n_knots(self) -> int:
        return (self.hi - self.lo) * (1 << self.step_bits) + 2

    def to_json(self) -> dict:
        return asdict(self)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _gelu_grad(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) + x * math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


FUNCTIONS = {
    "exp": math.exp,
    "gelu": _gelu,
    "gelu_grad": _gelu_grad,
    "recip": lambda m: 1.0 / m,
    "rsqrt": lambda m: 1.0 / math.sqrt(m),
}

# The constants the tables are made from (docs/fixed_point.md explains each choice).
SPECS = {
    # exp(z) for z in [-16, 0] (softmax after max subtraction), 24-bit values: the
    # TA-Selector ranks tokens by probabilities more precise than the stored 16-bit ones.
    "exp": PwlSpec("exp", lo=-16, hi=0, in_frac=14, step_bits=7, out_frac=24),
    # gelu(x) on [-8, 8]; outside: x for x > 8, 0 for x < -8.
    "gelu": PwlSpec("gelu", lo=-8, hi=8, in_frac=14, step_bits=7, out_frac=16),
    # gelu'(x) on [-8, 8]; outside: 1 for x > 8, 0 for x < -8.
    "gelu_grad": PwlSpec("gelu_grad", lo=-8, hi=8, in_frac=14, step_bits=7, out_frac=16),
    # 1/m for a mantissa m in [1, 2) with 20 fractional bits.
    "recip": PwlSpec("recip", lo=1, hi=2, in_frac=20, step_bits=8, out_frac=24),
    # 1/sqrt(m) for a mantissa m in [1, 4) (even exponent) with 20 fractional bits.
    "rsqrt": PwlSpec("rsqrt", lo=1, hi=4, in_frac=20, step_bits=8, out_frac=24),
}


def generate(spec: PwlSpec) -> np.ndarray:
    """The knots of a table, int32 (n_knots,)."""
    f = FUNCTIONS[spec.name]
    step = 2.0 ** (-spec.step_bits)
    vals = [math.floor(f(spec.lo + k * step) * 2.0**spec.out_frac + 0.5) for k in range(spec.n_knots)]
    return np.asarray(vals, dtype=np.int32)


@cache
def table(name: str) -> np.ndarray:
    return generate(SPECS[name])


@cache
def _knots_and_slopes(name: str) -> tuple[np.ndarray, np.ndarray]:
    t = table(name).astype(np.int64)
    return t, np.append(np.diff(t), 0)


def pwl(name: str, x) -> np.ndarray:
    """Evaluate table ``name`` at int64 ``x`` (at the table's in_frac, clamped to [lo, hi])."""
    spec = SPECS[name]
    t, d = _knots_and_slopes(name)  # d[i] = t[i + 1] - t[i]
    lo_i = spec.lo << spec.in_frac
    u = np.clip(np.asarray(x, dtype=np.int64), lo_i, spec.hi << spec.in_frac) - lo_i
    s = spec.in_frac - spec.step_bits
    i = u >> s
    r = u & ((1 << s) - 1)
    return t.take(i) + rshift_round(d.take(i) * r, s)


def mantissa(v, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive int64 v -> (m, e) with v ~= m * 2**(e - frac), m in [2**frac, 2**(frac+1)).

    e = floor(log2 v) (leading-one position). Bits below the ``frac``-bit mantissa are
    dropped (truncation), so m never reaches 2.0.
    """
    v = np.asarray(v, dtype=np.int64)
    e = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1  # exact: v < 2**53
    m = np.where(e >= frac, v >> np.maximum(e - frac, 0), v << np.maximum(frac - e, 0))
    return m, e


def recip(v) -> tuple[np.ndarray, np.ndarray]:
    """1/v for positive int64 v as (y, sh): 1/v ~= y * 2**-sh, y = T(m) at the table's out_frac."""
    spec = SPECS["recip"]
    m, e = mantissa(v, spec.in_frac)
    return pwl("recip", m), e + spec.out_frac


def rsqrt(v) -> tuple[np.ndarray, np.ndarray]:
    """1/sqrt(v) for positive int64 v as (y, sh): ~= y * 2**-sh, y = T(m) at the table's out_frac.

    The exponent is made even (m in [1, 4)) so that sqrt(2**e) = 2**(e/2) is a shift.
    """
    spec = SPECS["rsqrt"]
    m, e = mantissa(v, spec.in_frac)
    odd = e & 1
    m = m << odd  # mantissa in [1, 4)
    e = e - odd
    return pwl("rsqrt", m), e // 2 + spec.out_frac
