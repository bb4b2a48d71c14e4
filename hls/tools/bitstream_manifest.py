"""Writes bitstreams/<name>.json beside a built overlay (<name>.bit and <name>.hwh).

    python hls/tools/bitstream_manifest.py --dir bitstreams --name trilevel_zcu102 \
        --part xczu9eg-ffvb1156-2-e --board zcu102 --clock-mhz 150 --vlnv xilinx.com:hls:trilevel_engine:1.0

`make bitstream` runs it after Vivado. The manifest says which engine the bitstream holds:
the ABI version (abi.h), the configuration hash (sha256 of hls/include/config.h followed by
hls/include/abi.h, byte for byte), the IP's VLNV, part, board and clock, the build date, and
the sha256 and size of the .bit and the .hwh. A host compares the ABI version and the config
hash with its own before it loads the overlay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCLUDE = HERE.parent / "include"
sys.path.insert(0, str(HERE))

from gen_abi_json import CONFIG_FILES, config_hash, parse  # noqa: E402


def _file_entry(path: Path) -> dict:
    if path.is_symlink() or not path.is_file():
        raise FileNotFoundError(f"{path} is missing or not a regular file")
    data = path.read_bytes()
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest(directory: Path, name: str, part: str, board: str, clock_mhz: int, vlnv: str,
             include: Path = INCLUDE) -> dict:  # fmt: skip
    """The manifest of directory/name.{bit,hwh} (both must exist)."""
    return {
        "name": name,
        "abi_version": parse(include)["abi"]["ABI_VERSION"],
        "config_hash": {"sha256": config_hash(include), "of": [f"hls/include/{n}" for n in CONFIG_FILES]},
        "ip_vlnv": vlnv,
        "part": part,
        "board": board,
        "clock_mhz": clock_mhz,
        "built": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "bit": _file_entry(directory / f"{name}.bit"),
        "hwh": _file_entry(directory / f"{name}.hwh"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="folder holding <name>.bit and <name>.hwh")
    ap.add_argument("--name", required=True, help="base name of the overlay")
    ap.add_argument("--part", required=True)
    ap.add_argument("--board", required=True)
    ap.add_argument("--clock-mhz", type=int, required=True)
    ap.add_argument("--vlnv", required=True, help="the engine IP's vendor:library:name:version")
    args = ap.parse_args(argv)
    try:
        m = manifest(args.dir, args.name, args.part, args.board, args.clock_mhz, args.vlnv)
    except (FileNotFoundError, KeyError) as e:
        print(f"error: bitstream manifest: {e}", file=sys.stderr)
        return 1
    out = args.dir / f"{args.name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(m, indent=1) + "\n")
    tmp.replace(out)  # a reader never sees half a manifest
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
