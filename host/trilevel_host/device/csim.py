"""The C-sim backend: the engine's C++ (hls/src) built as a shared library and called by ctypes.

The library takes exactly the arguments of the synthesized top: the arena (here a numpy byte
buffer standing for DDR), the descriptor list's offset and length, and returns the status and
error-tag registers. ``make csim`` builds it; :func:`library_path` finds it.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from pathlib import Path

import numpy as np

from ..engine.abi import abi
from .base import Device, RunResult

LIB_NAME = "libtrilevel_engine.so"
ENV_VAR = "TRILEVEL_CSIM_LIB"


class CSimError(RuntimeError):
    """The C-sim library is missing or does not match this host package's ABI."""


def library_path() -> Path:
    """$TRILEVEL_CSIM_LIB, else build/csim/ of the source tree this package sits in."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parents[3] / "build" / "csim" / LIB_NAME


@cache
def _load(path: str) -> ctypes.CDLL:
    if not Path(path).is_file():
        raise CSimError(f"C-sim engine library {path} not found: run `make csim`")
    lib = ctypes.CDLL(path)
    u32p = ctypes.POINTER(ctypes.c_uint32)
    u64p = ctypes.POINTER(ctypes.c_uint64)
    lib.trilevel_run.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint64,
        ctypes.c_uint32,
        ctypes.c_uint32,
        u32p,
        u32p,
    ]
    lib.trilevel_run.restype = ctypes.c_int
    lib.trilevel_counters.argtypes = [u64p, u64p, ctypes.c_int]
    lib.trilevel_counters_reset.argtypes = []
    version = lib.trilevel_abi_version()
    if version != abi()["abi"]["ABI_VERSION"]:
        raise CSimError(
            f"C-sim library {path} has ABI {version}, this host expects {abi()['abi']['ABI_VERSION']}"
        )
    return lib


class CSimEngine:
    """Runs descriptor lists on an arena with the C++ engine; counts loop iterations."""

    def __init__(self, path: str | Path | None = None):
        self.lib = _load(str(path or library_path()))

    def run(self, arena: np.ndarray, prog: int, n_desc: int) -> RunResult:
        """One start of the engine: arena (uint8, modified in place), program offset and length."""
        if arena.dtype != np.uint8 or not arena.flags.c_contiguous:
            raise ValueError("the arena must be a contiguous uint8 array")
        status, tag = ctypes.c_uint32(0), ctypes.c_uint32(0)
        rc = self.lib.trilevel_run(
            arena.ctypes.data, arena.nbytes, prog, n_desc, ctypes.byref(status), ctypes.byref(tag)
        )
        if rc != 0:
            raise ValueError(
                f"the C-sim refused the arena ({arena.nbytes} bytes: a multiple of 16 below 4 GiB)"
            )
        return RunResult(status.value, tag.value)

    def reset_counters(self) -> None:
        self.lib.trilevel_counters_reset()

    def counters(self) -> dict[str, tuple[int, int]]:
        """{counter name: (iterations, loop entries)} since the last reset."""
        n = abi()["counters"]["COUNT"]
        iters = (ctypes.c_uint64 * n)()
        entries = (ctypes.c_uint64 * n)()
        self.lib.trilevel_counters(iters, entries, n)
        names = {v: k for k, v in abi()["counters"].items() if k != "COUNT"}
        return {names[i]: (iters[i], entries[i]) for i in sorted(names)}


class CSimDevice(Device):
    """The C-sim backend: the arena is a numpy byte array, a start is one library call.

    The call is synchronous and the walker always ends (every loop is bounded by the
    descriptors), so ``timeout`` is not applied; the wall time of :meth:`run` is the C-sim's,
    not a hardware latency.
    """

    kind = "csim"
    latency_label = "csim wall time (not a hardware latency)"

    def __init__(self, engine: CSimEngine | None = None):
        self.engine = engine or CSimEngine()
        self.arena = np.zeros(0, dtype=np.uint8)

    def allocate(self, nbytes: int) -> None:
        self.arena = np.zeros(nbytes, dtype=np.uint8)

    def write(self, offset: int, data: np.ndarray) -> None:
        data = np.asarray(data, dtype=np.uint8).reshape(-1)
        self._check_range(offset, data.size, self.arena.size)
        self.arena[offset : offset + data.size] = data

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        self._check_range(offset, nbytes, self.arena.size)
        return self.arena[offset : offset + nbytes].copy()

    def run(self, prog: int, n_desc: int, timeout: float) -> RunResult:
        return self.engine.run(self.arena, prog, n_desc)
