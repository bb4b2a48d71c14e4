"""The self-checking C++ testbench (hls/tb/tb_engine.cpp) and its test vectors.

The testbench is what Vitis HLS C simulation and co-simulation run, so here it is built
with g++ (make -C hls tb), run on the smoke vectors, and shown to fail when a vector's
expectation is wrong. The ops' own coverage comes from their C-sim tests.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from engine_harness import ROOT
from trilevel_host.engine.abi import abi
from trilevel_host.engine.tb_vectors import ProgramBuilder, Vector, status_codes, write

TB = ROOT / "build" / "tb" / "tb_engine"
SMOKE = ("luts_and_nops", "unknown_opcode", "shift_out_of_range", "lut_outside_arena")


@pytest.fixture(scope="module")
def tb():
    subprocess.run(["make", "-s", "-C", str(ROOT / "hls"), "tb", f"PYTHON={sys.executable}"], check=True)
    return TB


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    cmd = [sys.executable, str(ROOT / "hls/tools/write_tb_vectors.py"), "--out", str(out)]
    subprocess.run(cmd + [a for c in SMOKE for a in ("--case", c)], check=True)
    return out


def run_tb(tb, *dirs):
    return subprocess.run([str(tb), *map(str, dirs)], capture_output=True, text=True, timeout=60)


def test_smoke_vectors_pass(tb, smoke_dir):
    r = run_tb(tb, *(smoke_dir / c for c in SMOKE))
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.split()[:2] for ln in lines] == [["PASS", f"{c}:"] for c in SMOKE]
    assert "status 2 err_tag 7" in lines[1]  # the unknown opcode stops the walk at its tag


def test_a_corrupted_expected_region_fails(tb, smoke_dir, tmp_path):
    bad = tmp_path / "luts_and_nops"
    subprocess.run(["cp", "-r", str(smoke_dir / "luts_and_nops"), str(bad)], check=True)
    region = bad / "expect_0.bin"
    data = bytearray(region.read_bytes())
    data[1000] ^= 0x40
    region.write_bytes(bytes(data))
    r = run_tb(tb, smoke_dir / "unknown_opcode", bad)
    assert r.returncode == 1
    first, second = r.stdout.splitlines()
    assert first.startswith("PASS unknown_opcode")
    assert second.startswith("FAIL luts_and_nops: region 0") and "byte 1000" in second


def test_a_wrong_expected_status_fails(tb, smoke_dir, tmp_path):
    bad = tmp_path / "unknown_opcode"
    subprocess.run(["cp", "-r", str(smoke_dir / "unknown_opcode"), str(bad)], check=True)
    text = (bad / "vector.txt").read_text().replace("status 2\n", "status 1\n")
    (bad / "vector.txt").write_text(text)
    r = run_tb(tb, bad)
    assert r.returncode == 1 and r.stdout.startswith(
        "FAIL unknown_opcode: status 2 err_tag 7, expected status 1"
    )


def test_unreadable_vector_is_one_error_line(tb, tmp_path):
    r = run_tb(tb, tmp_path / "missing")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "vector.txt" in r.stderr
    assert run_tb(tb).returncode == 2  # no vector at all: usage


def test_vector_files_round_trip(tmp_path):
    p = ProgramBuilder()
    t = p.tensor("x", np.arange(10, dtype=np.int16).reshape(1, -1))
    p.op("NOP")
    arena, prog = p.build()
    vec = Vector("demo", arena, prog, 1, status_codes("DONE", "BAD_SIZE"))
    vec.expect(t.addr, np.arange(10, dtype=np.int16))
    d = write(vec, tmp_path / "demo")
    text = (d / "vector.txt").read_text().splitlines()
    assert f"prog {prog}" in text and "n_desc 1" in text
    assert f"status {abi()['status']['DONE']} {abi()['status']['BAD_SIZE']}" in text
    assert f"expect {t.addr} 20 expect_0.bin" in text
    assert (d / "arena.bin").read_bytes() == arena.tobytes()
    assert np.array_equal(np.fromfile(d / "expect_0.bin", np.int16), np.arange(10))
    with pytest.raises(ValueError, match="not inside"):
        vec.expect(arena.size - 4, np.zeros(4, np.int16))
