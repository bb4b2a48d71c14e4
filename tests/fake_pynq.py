"""A stand-in for the ``pynq`` module, so the board backend runs end to end without a board.

Put it in ``sys.modules["pynq"]`` (the backend imports pynq lazily). It models what the
backend relies on:

- ``Overlay(bit)``: needs the .hwh beside the .bit, holds one engine IP in ``ip_dict`` and
  binds it to the ``DefaultIP`` subclass whose ``bindto`` names its VLNV (as pynq does).
- ``register_map``: only the engine's register names exist (the bases ``mem`` and ``wmem`` as
  ``mem_1``/``mem_2`` halves, or as 64-bit registers when :data:`SPLIT_ADDRESSES` is False);
  every write is logged by name in
  :data:`LOG` (``CTRL.AP_START`` included); ``status`` and ``err_tag`` are read-only;
  ``CTRL.AP_DONE`` clears when read, like ap_ctrl_hs.
- ``allocate``: an ndarray subclass with ``device_address``, ``flush`` and ``invalidate``. The
  engine sees a separate DDR copy, so data the host forgot to flush is not seen by the engine
  and results it forgot to invalidate are not seen by the host.
- A start runs the C-sim engine on the DDR copy. ``hang = True`` on the IP, or :data:`HANG_FROM`
  = k (the k-th start of the process and later ones, from 1): done never rises.
  :data:`BEFORE_START` (a function of the DDR array and the registers) may change memory first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from trilevel_host.device.csim import CSimEngine

VLNV = "xilinx.com:hls:trilevel_engine:1.0"
SCALARS = ("mem_bytes", "prog", "n_desc", "status", "err_tag")
# Vitis HLS 2022.x lists a 64-bit m_axi base as two halves (mem_1 low, mem_2 high); later
# versions as one 64-bit register. SPLIT_ADDRESSES picks which the fake .hwh has.
SPLIT_ADDRESSES = True
READ_ONLY = ("status", "err_tag")
LOG: list[tuple[str, int]] = []  # every register write, by name, in order
DDR: dict[int, np.ndarray] = {}  # device address -> the engine's view of that buffer
HANG_FROM: int | None = None
BEFORE_START = None
STARTS = [0]
_DRIVERS: dict[str, type] = {}
_next_address = [0x6000_0000]


def reset() -> None:
    global HANG_FROM, BEFORE_START, SPLIT_ADDRESSES
    LOG.clear()
    DDR.clear()
    HANG_FROM, BEFORE_START, STARTS[0], SPLIT_ADDRESSES = None, None, 0, True


def _registers() -> tuple[str, ...]:
    bases = ("mem_1", "mem_2", "wmem_1", "wmem_2") if SPLIT_ADDRESSES else ("mem", "wmem")
    return bases + SCALARS


class PynqBuffer(np.ndarray):
    """A contiguous uint8 buffer; slices keep their device address and their place in DDR."""

    def __array_finalize__(self, obj):
        base = getattr(obj, "base_address", None)
        self.base_address = base
        self.flushes = getattr(obj, "flushes", None)
        if base is not None:
            self.offset = (
                self.__array_interface__["data"][0] - obj.__array_interface__["data"][0] + obj.offset
            )
            self.device_address = base + self.offset

    def flush(self) -> None:
        DDR[self.base_address][self.offset : self.offset + self.nbytes] = np.asarray(self).reshape(-1)
        self.flushes.append((self.offset, self.nbytes))

    def invalidate(self) -> None:
        self[...] = DDR[self.base_address][self.offset : self.offset + self.nbytes].reshape(self.shape)

    def freebuffer(self) -> None:
        DDR.pop(self.base_address, None)


def allocate(shape, dtype) -> PynqBuffer:
    n = int(np.prod(shape))
    assert np.dtype(dtype) == np.uint8 and len(shape) == 1, "the backend allocates one byte arena"
    host = np.zeros(n, dtype=np.uint8).view(PynqBuffer)
    host.base_address, host.offset, host.device_address, host.flushes = (
        _next_address[0],
        0,
        _next_address[0],
        [],
    )
    DDR[host.base_address] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)  # stale DDR
    _next_address[0] += (n + 0xFFFF) & ~0xFFFF
    return host


class _Ctrl:
    def __init__(self, ip):
        object.__setattr__(self, "_ip", ip)

    @property
    def AP_IDLE(self) -> int:
        return int(not self._ip.busy)

    @property
    def AP_DONE(self) -> int:
        done, self._ip.done = self._ip.done, False  # clear on read
        return int(done)

    def __setattr__(self, name, value):
        if name != "AP_START":
            raise AttributeError(f"CTRL.{name} cannot be written")
        LOG.append(("CTRL.AP_START", int(value)))
        if value:
            self._ip._engine_start()


class _RegisterMap:
    def __init__(self, ip):
        object.__setattr__(self, "_ip", ip)
        object.__setattr__(self, "_values", dict.fromkeys(_registers(), 0))
        object.__setattr__(self, "CTRL", _Ctrl(ip))

    def __getattr__(self, name):
        if name not in self._values:
            raise AttributeError(name)
        return self._values[name]

    def base(self, name: str) -> int:
        v = self._values
        return v[name] if name in v else v[name + "_1"] | (v[name + "_2"] << 32)

    def __setattr__(self, name, value):
        if name not in self._values or name in READ_ONLY:
            raise AttributeError(f"register {name} cannot be written")
        LOG.append((name, int(value)))
        self._values[name] = int(value)


class _RegisterIP(type):
    def __init__(cls, name, bases, attrs):
        super().__init__(name, bases, attrs)
        for vlnv in attrs.get("bindto", []):
            _DRIVERS[vlnv] = cls


class DefaultIP(metaclass=_RegisterIP):
    def __init__(self, description: dict):
        self.description = description
        self.register_map = _RegisterMap(self)
        self.busy = False
        self.done = False
        self.hang = False

    def _engine_start(self) -> None:
        """ap_start: the engine runs on DDR at once (or never finishes when hanging)."""
        v = self.register_map._values
        STARTS[0] += 1
        if self.hang or (HANG_FROM is not None and STARTS[0] >= HANG_FROM):
            self.busy = True
            return
        rm = self.register_map
        ddr = DDR[rm.base("mem")]
        assert rm.base("wmem") == rm.base("mem"), "both m_axi bases point at the arena"
        if BEFORE_START is not None:
            BEFORE_START(ddr, dict(v))
        r = CSimEngine().run(ddr[: v["mem_bytes"]], v["prog"], v["n_desc"])
        v["status"], v["err_tag"] = r.status, r.err_tag
        self.done = True


class Overlay:
    def __init__(self, bitfile: str):
        bit = Path(bitfile)
        if not bit.with_suffix(".hwh").is_file():
            raise OSError(f"no .hwh beside {bit}")  # real pynq needs it for the register map
        self.ip_dict = {"trilevel_engine_0": {"type": VLNV, "fullpath": "trilevel_engine_0"}}
        self.trilevel_engine_0 = _DRIVERS.get(VLNV, DefaultIP)(self.ip_dict["trilevel_engine_0"])
