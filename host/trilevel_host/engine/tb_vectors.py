"""Test vectors for the engine's C++ testbench (hls/tb/tb_engine.cpp): one directory per vector.

A vector is an arena before the run, the program's place in it, the accepted status codes,
the expected error tag, and regions of the arena (byte offset, expected bytes) that must
hold after the run. The testbench runs the synthesizable top on the arena and compares; the
same directories drive Vitis HLS C simulation and C/RTL co-simulation (hls/tcl/hls.tcl).

Directory layout::

    vector.txt      name, prog, n_desc, status (one or more accepted codes), err_tag,
                    one "expect <offset> <bytes> <file>" line per region
    arena.bin       the initial arena (a multiple of the AXI beat)
    expect_<i>.bin  the bytes region i must hold after the run
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .abi import abi, config, descriptor
from .arena import Arena

VECTOR_FILE = "vector.txt"
ARENA_FILE = "arena.bin"


@dataclass
class Vector:
    """One testbench run: ``arena`` (uint8, the arena before the run) and what must follow."""

    name: str
    arena: np.ndarray
    prog: int
    n_desc: int
    statuses: tuple[int, ...]
    err_tag: int = 0
    regions: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def expect(self, offset: int, data: np.ndarray) -> None:
        """Require the arena bytes at ``offset`` to equal ``data`` (read as bytes) after the run."""
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if offset < 0 or offset + raw.size > self.arena.size or raw.size == 0:
            raise ValueError(
                f"region [{offset}, {offset + raw.size}) is not inside the {self.arena.size}-byte arena"
            )
        self.regions.append((offset, raw.copy()))

    def expect_unchanged(self) -> None:
        """Require the whole arena to be left as it was (a refused program touches nothing)."""
        self.expect(0, self.arena)


def status_codes(*names: str) -> tuple[int, ...]:
    """Status names of abi.h (``"DONE"``, ``"BAD_SIZE"``, ...) as codes."""
    return tuple(abi()["status"][n] for n in names)


def write(vec: Vector, directory: str | Path) -> Path:
    """Write ``vec`` into ``directory`` (created; existing vector files are replaced)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    beat = config()["AXI_BYTES"]
    if vec.arena.dtype != np.uint8 or vec.arena.ndim != 1 or vec.arena.size % beat:
        raise ValueError(f"the arena must be 1-D uint8 of a multiple of {beat} bytes")
    if not vec.statuses:
        raise ValueError("a vector needs at least one accepted status")
    if any(c.isspace() for c in vec.name) or not vec.name:
        raise ValueError(f"vector name {vec.name!r} must be one word")
    lines = [
        "# tb_engine test vector (host/trilevel_host/engine/tb_vectors.py)",
        f"name {vec.name}",
        f"prog {vec.prog}",
        f"n_desc {vec.n_desc}",
        "status " + " ".join(str(s) for s in vec.statuses),
        f"err_tag {vec.err_tag}",
    ]
    vec.arena.tofile(d / ARENA_FILE)
    for i, (offset, data) in enumerate(vec.regions):
        fname = f"expect_{i}.bin"
        data.tofile(d / fname)
        lines.append(f"expect {offset} {data.size} {fname}")
    (d / VECTOR_FILE).write_text("\n".join(lines) + "\n")
    return d


class ProgramBuilder:
    """An arena plus a descriptor list laid out as the host does (tensors, then the program).

    ``tensor`` allocates (optionally with values), ``op`` appends a descriptor (its tag is
    its 1-based position), ``build`` places the program after every tensor and returns the
    initial arena and the program's offset.
    """

    def __init__(self) -> None:
        self.arena = Arena()
        self.descs: list[np.ndarray] = []
        self._writes: list[tuple[object, np.ndarray]] = []

    def tensor(
        self, name: str, values=None, rows: int | None = None, cols: int | None = None, dtype=np.int16
    ):
        if values is not None:
            values = np.asarray(values)
            values = values.reshape(values.shape[0] if values.ndim > 1 else 1, -1)
            rows, cols = values.shape
        t = self.arena.alloc(name, rows, cols, dtype)
        if values is not None:
            self._writes.append((t, values))
        return t

    def op(self, name: str, flags: tuple[str, ...] = (), **fields: int) -> np.ndarray:
        d = descriptor(name, flags, tag=len(self.descs) + 1, **fields)
        self.descs.append(d)
        return d

    def build(self, spare_bytes: int = 0) -> tuple[np.ndarray, int]:
        """(arena bytes, program offset); ``spare_bytes`` of zeros follow the program."""
        prog = self.arena.alloc("program", len(self.descs), self.descs[0].size, np.uint32)
        if spare_bytes:
            self.arena.alloc("spare", 1, -(-spare_bytes // 2))
        buf = self.arena.freeze()
        for t, values in self._writes:
            self.arena.write(t, values)
        self.arena.view(prog)[:] = np.stack(self.descs)
        return buf.copy(), prog.addr
