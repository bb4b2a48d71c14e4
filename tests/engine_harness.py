"""Running single ops and small programs on the C-sim engine from tests.

:func:`engine` builds the C-sim library once per session (``make csim``); :class:`Program`
lays out an arena, appends descriptors and runs them, so an op test reads as: allocate the
tensors, write inputs, add one descriptor, run, compare with the numpy reference.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
from trilevel_host import luts
from trilevel_host.device.csim import CSimEngine, RunResult
from trilevel_host.engine.abi import descriptor
from trilevel_host.engine.arena import Arena

ROOT = Path(__file__).resolve().parents[1]
LUT_NAMES = ("exp", "gelu", "gelu_grad", "recip", "rsqrt")


@functools.cache
def engine() -> CSimEngine:
    """The C-sim engine, built from hls/ on first use (make's dependencies keep it current)."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "hls"), "csim", f"PYTHON={sys.executable}"], check=True)
    return CSimEngine()


class Program:
    """An arena plus a descriptor list. Allocate with :meth:`tensor`, add ops with :meth:`op`,
    then :meth:`run` (the program tensor is placed last, after every data tensor)."""

    def __init__(self, with_luts: bool = True):
        self.arena = Arena()
        self.descs: list[np.ndarray] = []
        if with_luts:
            for name in LUT_NAMES:
                knots = luts.table(name)
                t = self.arena.alloc(f"lut.{name}", 1, knots.size, np.int32)
                self._pending_writes = getattr(self, "_pending_writes", [])
                self._pending_writes.append((t, knots.reshape(1, -1)))
                self.op("LOAD_LUT", X=t.addr, N=knots.size, P0=LUT_NAMES.index(name))

    def tensor(
        self, name: str, values=None, rows: int | None = None, cols: int | None = None, dtype=np.int16
    ):
        """Allocate a (rows, cols) tensor, optionally initialised from ``values``."""
        if values is not None:
            values = np.asarray(values)
            values = values.reshape(values.shape[0] if values.ndim > 1 else 1, -1)
            rows, cols = values.shape
        t = self.arena.alloc(name, rows, cols, dtype)
        if values is not None:
            self._pending_writes = getattr(self, "_pending_writes", [])
            self._pending_writes.append((t, values))
        return t

    def op(self, name: str, flags: tuple[str, ...] = (), **fields) -> None:
        self.descs.append(descriptor(name, flags, tag=len(self.descs) + 1, **fields))

    def run(self, extra_bytes: int = 0) -> RunResult:
        """Run every descriptor; ``extra_bytes`` of spare arena after the program (for tests of bounds)."""
        prog = self.arena.alloc("program", len(self.descs), self.descs[0].size, np.uint32)
        if extra_bytes:
            self.arena.alloc("spare", 1, extra_bytes // 2)
        self.arena.freeze()
        for t, values in getattr(self, "_pending_writes", []):
            self.arena.write(t, values)
        self.arena.view(prog)[:] = np.stack(self.descs)
        return engine().run(self.arena.buf, prog.addr, len(self.descs))

    def read(self, name: str) -> np.ndarray:
        return self.arena.read(name).astype(np.int64)
