"""The board backend: the engine IP on the ZCU102 through PYNQ.

``pynq`` is imported here only, when a :class:`BoardDevice` is made (``pip install
'trilevel_host[board]'``); the rest of the host package runs without it. Before the overlay is
loaded, the bitstream is checked: its ``.hwh`` (PYNQ's register map comes from it) and its
manifest ``bitstreams/<name>.json`` (written by hls/tools/bitstream_manifest.py) must sit
beside the ``.bit``; the manifest must name this host's ABI version, engine config hash
(:func:`trilevel_host.engine.abi.config_hash`) and IP, and the size and sha256 of both files,
so a bitstream built from other headers is refused before it can misread a descriptor.

The engine IP is bound by its VLNV (a ``pynq.DefaultIP`` subclass); every register is
written by its ``register_map`` name (``mem``, ``wmem``, ``mem_bytes``, ``prog``, ``n_desc``;
``status`` and ``err_tag`` read back), ``CTRL.AP_START`` starts it and ``CTRL.AP_DONE`` is
polled until a deadline. The arena is one ``pynq.allocate`` buffer: ranges the host wrote are
flushed from the CPU caches before a start, ranges it reads are invalidated first.
"""

from __future__ import annotations

import functools
import importlib
import json
import time
from pathlib import Path

import numpy as np

from ..engine.abi import abi, config_hash
from ..package import sha256_file
from .base import Device, EngineTimeout, RunResult

VLNV = "xilinx.com:hls:trilevel_engine:1.0"
POLL_SECONDS = 20e-6  # between AP_DONE reads; an AXI-Lite read itself takes about a microsecond


class BoardError(RuntimeError):
    """The board backend cannot start: pynq missing, bitstream incomplete or for another engine."""


def bitstream_manifest_path(bit: Path) -> Path:
    return bit.with_suffix(".json")


def check_bitstream(bit: str | Path) -> Path:
    """Refuse a bitstream this host cannot drive; returns its .hwh path. One-line errors."""
    bit = Path(bit)
    if bit.suffix != ".bit" or not bit.is_file():
        raise BoardError(f"bitstream {bit} is not a .bit file")
    hwh = bit.with_suffix(".hwh")
    manifest = bitstream_manifest_path(bit)
    for path, why in (
        (hwh, "PYNQ reads the register map from it"),
        (manifest, "it says which engine the bitstream is"),
    ):
        if not path.is_file() or path.is_symlink():
            raise BoardError(f"bitstream {bit}: {path.name} is missing beside it ({why})")
    try:
        m = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BoardError(f"bitstream {bit}: {manifest.name} is not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise BoardError(f"bitstream {bit}: {manifest.name} is not a JSON object")
    want = abi()["abi"]["ABI_VERSION"]
    if m.get("abi_version") != want:
        raise BoardError(
            f"bitstream {bit} has engine ABI {m.get('abi_version')!r}, this host speaks ABI {want}"
        )
    theirs = m.get("config_hash")
    theirs = theirs.get("sha256") if isinstance(theirs, dict) else None
    if theirs != config_hash():
        raise BoardError(
            f"bitstream {bit} was built for another engine config (config hash {str(theirs)[:12]}, "
            f"this host's is {config_hash()[:12]}): rebuild it or use the matching host"
        )
    if m.get("ip_vlnv", VLNV) != VLNV:
        raise BoardError(f"bitstream {bit} holds IP {m.get('ip_vlnv')}, this host drives {VLNV}")
    for path, key in ((bit, "bit"), (hwh, "hwh")):
        _check_file_entry(bit, path, m.get(key))
    return hwh


def _check_file_entry(bit: Path, path: Path, entry) -> None:
    """The manifest's size and sha256 of the .bit / .hwh: a file replaced after the build is refused."""
    if not isinstance(entry, dict) or "sha256" not in entry or "bytes" not in entry:
        raise BoardError(f"bitstream {bit}: its manifest lacks the size and sha256 of {path.name}")
    if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
        raise BoardError(
            f"bitstream {bit}: {path.name} is not the file its manifest describes (size or sha256)"
        )


def _import_pynq():
    try:
        return importlib.import_module("pynq")
    except ImportError as e:
        raise BoardError(f"the board backend needs pynq (pip install 'trilevel_host[board]'): {e}") from None


@functools.cache
def engine_driver(pynq):
    """The engine's DefaultIP subclass for this pynq module (defined once: pynq registers
    drivers by their ``bindto`` list when the class is made, before an Overlay binds IPs)."""

    class TrilevelEngineIP(pynq.DefaultIP):
        """The Tri-Level engine IP: one start walks a descriptor list in the arena."""

        bindto = [VLNV]

        def launch(self, base: int, mem_bytes: int, prog: int, n_desc: int) -> None:
            rm = self.register_map
            if not rm.CTRL.AP_IDLE:
                raise BoardError("the engine is still busy with an earlier start (reload the overlay)")
            for name, value in (("mem", base), ("wmem", base)):
                _write_address(rm, name, value)
            rm.mem_bytes = mem_bytes
            rm.prog = prog
            rm.n_desc = n_desc
            rm.CTRL.AP_START = 1

        def wait_done(self, timeout: float) -> RunResult:
            rm = self.register_map
            deadline = time.monotonic() + timeout
            while not rm.CTRL.AP_DONE:
                if time.monotonic() > deadline:
                    raise EngineTimeout(
                        f"the engine did not finish within {timeout:g} s (ap_done never rose)"
                    )
                time.sleep(POLL_SECONDS)
            return RunResult(int(rm.status), int(rm.err_tag))

    return TrilevelEngineIP


def _write_address(rm, name: str, value: int) -> None:
    """A 64-bit m_axi base register: one register ``name`` (recent Vitis HLS) or two 32-bit
    halves ``name_1`` (low) and ``name_2`` (high), as older .hwh files list them."""
    if hasattr(rm, name):
        setattr(rm, name, value)
    else:
        setattr(rm, name + "_1", value & 0xFFFFFFFF)
        setattr(rm, name + "_2", value >> 32)


class BoardDevice(Device):
    """The engine on the board: a PYNQ overlay and one pynq buffer as the arena."""

    kind = "board"
    latency_label = "measured"

    def __init__(self, bitstream: str | Path):
        check_bitstream(bitstream)
        self.pynq = _import_pynq()
        driver = engine_driver(self.pynq)
        self.overlay = self.pynq.Overlay(str(bitstream))
        names = [n for n, d in self.overlay.ip_dict.items() if d.get("type") == VLNV]
        if len(names) != 1:
            raise BoardError(f"bitstream {bitstream} holds {len(names)} engine IPs ({VLNV}), expected 1")
        self.ip = getattr(self.overlay, names[0])
        if not isinstance(self.ip, driver):
            raise BoardError(f"IP {names[0]} was not bound to the engine driver")
        self.buf = None
        self._dirty: list[tuple[int, int]] = []

    def allocate(self, nbytes: int) -> None:
        self.close()
        self.buf = self.pynq.allocate(shape=(nbytes,), dtype=np.uint8)
        self.buf[:] = 0
        self._dirty = [(0, nbytes)]

    def write(self, offset: int, data: np.ndarray) -> None:
        data = np.asarray(data, dtype=np.uint8).reshape(-1)
        self._check_range(offset, data.size, self.buf.size)
        self.buf[offset : offset + data.size] = data
        if not any(o <= offset and offset + data.size <= o + n for o, n in self._dirty):
            self._dirty.append((offset, data.size))

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        self._check_range(offset, nbytes, self.buf.size)
        view = self.buf[offset : offset + nbytes]
        view.invalidate()  # drop stale CPU cache lines: the engine wrote DDR behind them
        return np.array(view, dtype=np.uint8)

    def run(self, prog: int, n_desc: int, timeout: float) -> RunResult:
        for offset, nbytes in self._dirty:
            self.buf[offset : offset + nbytes].flush()  # the engine reads DDR, not the CPU caches
        self._dirty = []
        self.ip.launch(int(self.buf.device_address), self.buf.nbytes, prog, n_desc)
        return self.ip.wait_done(timeout)

    def close(self) -> None:
        if self.buf is not None:
            self.buf.freebuffer()
            self.buf = None
