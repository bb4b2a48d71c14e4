"""Helpers for the backward-op tests: the format table, slot packing, random gradients.

A backward op reads the formats of its gradient inputs from slots of an int32 table in the
arena (descriptor field AUX3) and writes its outputs' formats to slots; ``P3`` names four
8-bit slots F0..F3 (hls/README.md, "Backward ops").
"""

from __future__ import annotations

import numpy as np
from engine_harness import Program
from trilevel_host.engine.abi import abi

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
