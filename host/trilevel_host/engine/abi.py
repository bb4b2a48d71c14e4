"""The engine's numbers and the descriptor format, from ``abi.json`` (generated from hls/include).

A descriptor is ``DESC_WORDS`` little-endian 32-bit words (hls/include/abi.h): word 0 holds the
opcode (bits 7:0) and flags (15:8); the other words are named fields (``X``, ``Y``, ``M``,
``SH0``, ...). :func:`descriptor` packs one from keyword arguments, so a program reads like the
op table in hls/README.md.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

ABI_FILE = Path(__file__).with_name("abi.json")


@cache
def abi() -> dict[str, dict[str, int]]:
    return json.loads(ABI_FILE.read_text())


def config() -> dict[str, int]:
    """config.h without its CFG_ prefix (MAX_TOKENS, MC_ROWS, AXI_BITS, ...)."""
    return abi()["config"]


def opcode(name: str) -> int:
    return abi()["opcodes"][name]


def status_name(code: int) -> str:
    for name, value in abi()["status"].items():
        if value == code:
            return name
    return f"UNKNOWN({code})"


def descriptor(op: str, flags: tuple[str, ...] = (), tag: int = 0, **fields: int) -> np.ndarray:
    """One descriptor as (DESC_WORDS,) uint32. ``fields`` are word names of abi.h (X, M, SH0, ...);
    negative values (shifts) are stored in two's complement."""
    a = abi()
    words = np.zeros(a["abi"]["DESC_WORDS"], dtype=np.uint32)
    bits = 0
    for f in flags:
        bits |= a["flags"][f]
    words[a["desc_words"]["OP"]] = a["opcodes"][op] | (bits << 8)
    words[a["desc_words"]["TAG"]] = tag
    for name, value in fields.items():
        value = int(value)
        if not -(1 << 31) <= value < (1 << 32):
            raise ValueError(f"descriptor field {name}={value} does not fit 32 bits")
        words[a["desc_words"][name]] = value & 0xFFFFFFFF
    return words


def split64(value: int) -> dict[str, int]:
    """A 64-bit constant as the E0 (low) and E1 (high) fields."""
    value = int(value) & ((1 << 64) - 1)
    return {"E0": value & 0xFFFFFFFF, "E1": value >> 32}


def config_hash() -> str:
    """sha256 of hls/include/config.h followed by abi.h, the engine's identity as a bitstream's
    manifest (bitstreams/<name>.json, ``config_hash``) records it; generated into abi.json."""
    return abi()["config_hash"]["sha256"]
