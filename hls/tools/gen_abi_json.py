"""Writes the engine's numbers (config.h, abi.h, counters.h, the LUT constants of fixed.h) as JSON.

    python hls/tools/gen_abi_json.py [--check]

The output, host/trilevel_host/engine/abi.json (with the headers' config hash), is what the host program, the cycle model and
the resource estimate read: the headers stay the one source, the JSON a generated copy.
--check exits 1 when the committed JSON is not what the headers give (a test runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADERS = ["config.h", "abi.h", "counters.h", "fixed.h"]
OUT = ROOT / "host" / "trilevel_host" / "engine" / "abi.json"
DEFINE = re.compile(r"^#define\s+([A-Z][A-Z0-9_]*)\s+\(?(-?\d+)\)?\s*(?://.*)?$")
DERIVED = re.compile(r"^#define\s+([A-Z][A-Z0-9_]*)\s+\((CFG_[A-Z0-9_]+)\s*/\s*(\d+)\)\s*$")
GROUPS = {"CFG_": "config", "OP_": "opcodes", "FLAG_": "flags", "ST_": "status", "DW_": "desc_words",
          "LUT_": "luts", "CNT_": "counters", "ABI_": "abi", "DESC_": "abi"}  # fmt: skip


CONFIG_FILES = ("config.h", "abi.h")  # the headers that fix the engine's sizes, opcodes and layout


def config_hash(include: Path = ROOT / "hls" / "include") -> str:
    """sha256 (hex) of config.h then abi.h: equal hashes mean the same sizes, opcodes and layout."""
    h = hashlib.sha256()
    for name in CONFIG_FILES:
        h.update((Path(include) / name).read_bytes())
    return h.hexdigest()


def parse(include: Path) -> dict:
    values: dict[str, int] = {}
    for name in HEADERS:
        for line in (include / name).read_text().splitlines():
            line = line.strip()
            if m := DEFINE.match(line):
                values[m.group(1)] = int(m.group(2))
            elif m := DERIVED.match(line):
                values[m.group(1)] = values[m.group(2)] // int(m.group(3))
    out: dict[str, dict[str, int]] = {g: {} for g in dict.fromkeys(GROUPS.values())}
    for key, value in values.items():
        for prefix, group in GROUPS.items():
            if key.startswith(prefix):
                out[group][key.removeprefix(prefix) if group != "abi" else key] = value
                break
    return out


def render(include: Path = ROOT / "hls" / "include") -> str:
    out = parse(include)
    # the engine's identity, as a bitstream's manifest records it (bitstream_manifest.py)
    out["config_hash"] = {"sha256": config_hash(include), "of": [f"hls/include/{n}" for n in CONFIG_FILES]}
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(
                f"error: {OUT.relative_to(ROOT)} is stale: run python hls/tools/gen_abi_json.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
