"""The engine's walker, ABI and error statuses in C-sim (the ops have their own tests)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from engine_harness import ROOT, Program, engine
from trilevel_host import luts
from trilevel_host.engine.abi import abi, descriptor


def test_abi_json_is_generated_from_the_headers():
    r = subprocess.run(
        [sys.executable, str(ROOT / "hls/tools/gen_abi_json.py"), "--check"], capture_output=True
    )
    assert r.returncode == 0, r.stderr.decode()


def test_lut_constants_match_the_reference_tables():
    a = abi()["luts"]
    for name, spec in luts.SPECS.items():
        key = name.upper()
        assert a[f"{key}_LO"] == spec.lo and a[f"{key}_HI"] == spec.hi
        assert a[f"{key}_IN_FRAC"] == spec.in_frac and a[f"{key}_STEP_BITS"] == spec.step_bits
        assert a[f"{key}_OUT_FRAC"] == spec.out_frac and a[f"{key}_KNOTS"] == spec.n_knots


def test_luts_load_and_a_nop_program_finishes():
    p = Program()
    p.op("NOP")
    r = p.run()
    assert r.ok, r.status_name


def test_unknown_opcode_stops_with_its_tag():
    p = Program(with_luts=False)
    p.op("NOP")
    p.descs.append(descriptor("NOP", tag=42))
    p.descs[-1][0] = 250  # no such opcode
    p.op("NOP")
    r = p.run()
    assert r.status_name == "BAD_OPCODE" and r.err_tag == 42


@pytest.mark.parametrize("n", [0, 100, 2049])
def test_lut_with_wrong_knot_count_is_refused(n):
    p = Program(with_luts=False)
    t = p.tensor("t", np.zeros((1, 2050), np.int32), dtype=np.int32)
    p.op("LOAD_LUT", X=t.addr, N=n, P0=0)
    assert p.run().status_name == "BAD_SIZE"


def test_lut_outside_the_arena_or_bad_table_is_refused():
    p = Program(with_luts=False)
    p.op("LOAD_LUT", X=1 << 30, N=2050, P0=0)
    assert p.run().status_name == "BAD_ADDRESS"
    p = Program(with_luts=False)
    p.op("LOAD_LUT", X=0, N=2050, P0=9)
    assert p.run().status_name == "BAD_PARAM"
    p = Program(with_luts=False)
    p.op("NOP", SH1=99)
    assert p.run().status_name == "BAD_PARAM"


def test_program_outside_the_arena_is_refused():
    p = Program(with_luts=False)
    p.op("NOP")
    p.run()
    r = engine().run(p.arena.buf, p.arena.buf.nbytes - 16, 1)
    assert r.status_name == "BAD_PROGRAM"
    r = engine().run(p.arena.buf, 0, 0)
    assert r.status_name == "BAD_PROGRAM"


def test_counters_count_descriptor_fetches():
    e = engine()
    p = Program(with_luts=False)
    for _ in range(3):
        p.op("NOP")
    e.reset_counters()
    assert p.run().ok
    it, ent = e.counters()["DESC_READ"]
    assert ent == 3 and it == 3 * abi()["abi"]["DESC_BYTES"] // abi()["config"]["AXI_BYTES"]
