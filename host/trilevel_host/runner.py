"""Per-sample inference through the engine: load a package once, then stream images.

:class:`EngineRunner` writes the program's arena image (weights, tables, descriptors) into a
device once and runs the table-loading list; then each :meth:`~EngineRunner.infer` writes one
quantised image, starts the forward list, waits, and reads back the logits and the selectors'
kept-token and connection indices. The same runner drives the C-sim and the board.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .device.base import Device, EngineError
from .engine.arena import decode, encode
from .engine.program import EngineProgram, build_program
from .package import Package

DEFAULT_TIMEOUT = 10.0  # seconds per start; a DeiT-S forward takes tens of milliseconds on the board


class InputError(ValueError):
    """An input the loaded model cannot take (wrong shape or out of the int16 range)."""


@dataclass
class Inference:
    """One sample's results; logits at the package's ``head.out`` format."""

    logits: np.ndarray  # (num_classes,) int16 values
    keep_idx: list[np.ndarray]  # per selector (n_keep,) original patch ids, ascending
    connections: list[np.ndarray | None]  # per selector (n_keep, n_conn) kept-part indices, or None
    seconds: float  # wall time of the forward's start: input flush, start, wait for done (see device.latency_label)


class EngineRunner:
    """A package loaded into a device; ``timeout`` bounds every start (board only)."""

    def __init__(self, program: EngineProgram, device: Device, timeout: float = DEFAULT_TIMEOUT):
        self.program, self.device, self.timeout = program, device, timeout
        device.allocate(program.arena.size)
        device.write(0, program.image)
        self.run("setup")

    @classmethod
    def from_package(cls, pkg: Package, device: Device, timeout: float = DEFAULT_TIMEOUT) -> EngineRunner:
        return cls(build_program(pkg), device, timeout)

    def run(self, which: str) -> float:
        """Run the ``setup`` or ``forward`` list; returns its wall time in seconds."""
        prog, n = self.program.program(which)
        t0 = time.perf_counter()
        result = self.device.run(prog, n, self.timeout)
        seconds = time.perf_counter() - t0
        if not result.ok:
            raise EngineError(
                f"the engine stopped with {result.status_name} at {self.program.describe_tag(result.err_tag)}",
                result,
            )
        return seconds

    def write(self, name: str, values) -> None:
        t = self.program.arena.tensors[name]
        self.device.write(t.addr, encode(t, values))

    def read(self, name: str) -> np.ndarray:
        """(rows, cols) of an arena tensor as the engine left it (any layer output by name)."""
        t = self.program.arena.tensors[name]
        return decode(t, self.device.read(t.addr, t.rows * t.stride * t.dtype.itemsize))

    def infer(self, image: np.ndarray) -> Inference:
        """image: (Cin, H, W) ints at the package's ``input`` format (ReferenceModel.quantize_input)."""
        cfg = self.program.cfg
        want = (cfg.in_chans, cfg.img_size, cfg.img_size)
        image = np.asarray(image)
        if image.shape != want:
            raise InputError(
                f"image of shape {image.shape}: the model takes {want} (channels, height, width)"
            )
        if not np.issubdtype(image.dtype, np.integer) or image.min() < -32768 or image.max() > 32767:
            raise InputError("the image must hold int16 values (quantise it at the package's input format)")
        self.write("input", image.reshape(cfg.in_chans * cfg.img_size, cfg.img_size))
        seconds = self.run("forward")
        conns = [None if c is None else self.read(c) for c in self.program.connections]
        return Inference(
            self.read("head.out")[0], [self.read(k)[0] for k in self.program.keep_idx], conns, seconds
        )

    def close(self) -> None:
        self.device.close()
