"""Writes the testbench's test vectors (hls/tools/tb_cases.py), one directory per case.

    python hls/tools/write_tb_vectors.py --out build/hls/vectors [--case NAME ...] [--list]

Each directory is what hls/tb/tb_engine.cpp reads (host/trilevel_host/engine/tb_vectors.py
describes the files). `make hls` writes every case and hands the directory to Vitis HLS C
simulation and co-simulation; the tests run the same cases under AddressSanitizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "host"), str(Path(__file__).resolve().parent)]

from tb_cases import all_cases  # noqa: E402
from trilevel_host.engine.tb_vectors import write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="directory that receives one subdirectory per case")
    ap.add_argument(
        "--case", action="append", default=[], help="a case name (repeatable; default: every case)"
    )
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    args = ap.parse_args(argv)
    cases = all_cases()
    if args.list:
        print("\n".join(cases))
        return 0
    if args.out is None:
        ap.error("--out is required")
    unknown = [c for c in args.case if c not in cases]
    if unknown:
        print(f"error: unknown case {unknown[0]!r} (--list shows them)", file=sys.stderr)
        return 2
    for name in args.case or list(cases):
        write(cases[name](), args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
