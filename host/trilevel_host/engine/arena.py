"""The engine's memory: one byte buffer holding descriptors, tables, weights and activations.

Tensors are 2-D (rows, cols) of int16 or int32, each starting on an AXI beat (16 bytes), with
a row stride padded to whole beats, as the engine requires (hls/include/memory.h). The same
layout goes to the board (one pynq buffer) and to the C-sim (a numpy array).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .abi import config


@dataclass(frozen=True)
class Tensor:
    """A tensor's place in the arena: byte offset, shape, row stride in elements, dtype."""

    addr: int
    rows: int
    cols: int
    stride: int
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return self.rows * self.stride * self.dtype.itemsize


def padded(cols: int, dtype) -> int:
    """Row stride in elements: cols rounded up to whole AXI beats."""
    per_beat = config()["AXI_BYTES"] // np.dtype(dtype).itemsize
    return -(-cols // per_beat) * per_beat


class Arena:
    """Bump allocator over a byte buffer; :meth:`alloc` before :meth:`freeze`, then read/write."""

    def __init__(self) -> None:
        self.size = 0
        self.tensors: dict[str, Tensor] = {}
        self.buf: np.ndarray | None = None

    def alloc(self, name: str, rows: int, cols: int, dtype=np.int16) -> Tensor:
        if name in self.tensors:
            raise ValueError(f"arena tensor {name!r} allocated twice")
        if rows < 1 or cols < 1:
            raise ValueError(f"arena tensor {name!r} has shape ({rows}, {cols})")
        dtype = np.dtype(dtype)
        t = Tensor(self.size, rows, cols, padded(cols, dtype), dtype)
        self.tensors[name] = t
        beat = config()["AXI_BYTES"]
        self.size += -(-t.nbytes // beat) * beat
        return t

    def freeze(self) -> np.ndarray:
        """Allocate the zeroed buffer (uint8) once every tensor has its place."""
        if self.buf is None:
            self.buf = np.zeros(max(self.size, config()["AXI_BYTES"]), dtype=np.uint8)
        return self.buf

    def view(self, t: Tensor | str) -> np.ndarray:
        """(rows, stride) view of a tensor in the buffer (padding columns included)."""
        t = self.tensors[t] if isinstance(t, str) else t
        buf = self.freeze()
        return buf[t.addr : t.addr + t.nbytes].view(t.dtype).reshape(t.rows, t.stride)

    def write(self, t: Tensor | str, values) -> None:
        t = self.tensors[t] if isinstance(t, str) else t
        v = np.asarray(values)
        v = v.reshape(t.rows, -1)
        if v.shape[1] != t.cols:
            raise ValueError(f"arena write: {v.shape} into a ({t.rows}, {t.cols}) tensor")
        info = np.iinfo(t.dtype)
        if v.size and (v.min() < info.min or v.max() > info.max):
            raise ValueError(f"arena write: values outside {t.dtype}")
        view = self.view(t)
        view[:, : t.cols] = v
        view[:, t.cols :] = 0

    def read(self, t: Tensor | str) -> np.ndarray:
        t = self.tensors[t] if isinstance(t, str) else t
        return self.view(t)[:, : t.cols].copy()


def encode(t: Tensor, values) -> np.ndarray:
    """The bytes of tensor ``t`` holding ``values`` (rows, cols): padded rows, padding zero, uint8."""
    v = np.asarray(values).reshape(t.rows, -1)
    if v.shape[1] != t.cols:
        raise ValueError(f"{v.shape} values for a ({t.rows}, {t.cols}) tensor")
    info = np.iinfo(t.dtype)
    if v.size and (v.min() < info.min or v.max() > info.max):
        raise ValueError(f"values outside {t.dtype}")
    out = np.zeros((t.rows, t.stride), dtype=t.dtype)
    out[:, : t.cols] = v
    return out.reshape(-1).view(np.uint8)


def decode(t: Tensor, raw: np.ndarray) -> np.ndarray:
    """(rows, cols) values of tensor ``t`` from its bytes (as :func:`encode` lays them out)."""
    return np.asarray(raw, dtype=np.uint8).view(t.dtype).reshape(t.rows, t.stride)[:, : t.cols].copy()
