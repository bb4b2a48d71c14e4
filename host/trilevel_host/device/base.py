"""The one interface every engine backend offers: an arena of bytes and a start.

A :class:`Device` holds one arena (the engine's DDR): the host writes and reads byte ranges
of it and starts the engine on a descriptor list. The C-sim backend keeps the arena in a
numpy array; the board backend in a pynq buffer that the engine reads over m_axi. What the
descriptors mean is the program's business (:mod:`trilevel_host.engine.program`); the device
only moves bytes and reports the engine's status registers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..engine.abi import abi, status_name


@dataclass(frozen=True)
class RunResult:
    """The engine's status and err_tag registers after one start."""

    status: int
    err_tag: int

    @property
    def ok(self) -> bool:
        return self.status == abi()["status"]["DONE"]

    @property
    def status_name(self) -> str:
        return status_name(self.status)


class EngineTimeout(TimeoutError):
    """The engine did not report done within the timeout."""


class EngineError(RuntimeError):
    """The engine stopped with an error status; the message names the op that stopped it."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


class Device(ABC):
    """An engine plus its arena. ``latency_label`` says what the wall time of :meth:`run` is."""

    kind: str = ""
    latency_label: str = ""

    @abstractmethod
    def allocate(self, nbytes: int) -> None:
        """Give the engine an arena of ``nbytes`` (a multiple of 16), zeroed."""

    @abstractmethod
    def write(self, offset: int, data: np.ndarray) -> None:
        """Copy ``data`` (uint8) into the arena at byte ``offset``."""

    @abstractmethod
    def read(self, offset: int, nbytes: int) -> np.ndarray:
        """A copy of ``nbytes`` of the arena from byte ``offset`` (uint8)."""

    @abstractmethod
    def run(self, prog: int, n_desc: int, timeout: float) -> RunResult:
        """Start the engine on the ``n_desc`` descriptors at byte ``prog`` and wait for it;
        raises :class:`EngineTimeout` when done does not come within ``timeout`` seconds."""

    def close(self) -> None:  # noqa: B027 (optional hook: the C-sim has nothing to release)
        """Release the arena (and the overlay)."""

    def _check_range(self, offset: int, nbytes: int, size: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside the {size}-byte arena")
