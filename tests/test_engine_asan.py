"""Bad inputs under AddressSanitizer and UBSan: the engine refuses them without touching memory.

The testbench built with -fsanitize=address,undefined (make -C hls csim-asan) runs every
named vector of hls/tools/tb_cases.py in its own process: the smoke program, one valid
descriptor per op, descriptors with one field made wrong (sizes over the maxima, zero and
absurd sizes, addresses past the arena, misaligned or wrapping, short strides, indices out
of range, unknown tables) and programs outside the arena. Each must give its status, leave
the arena as the vector says (all of it, for a refusal) and raise no sanitizer report. The
arena buffer ends exactly at the arena's end, so a stray access past it is a report. Ops
still placeholders answer BAD_OPCODE; their vectors say so until the op is written.

A new bad input is one line in tb_cases.BAD_DESCRIPTORS (or BAD_PROGRAMS).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from engine_harness import ROOT
from trilevel_host.engine.abi import abi
from trilevel_host.engine.tb_vectors import write

ASAN_TB = ROOT / "build" / "csim-asan" / "tb_engine"
# Leak checking is off: the kernels allocate nothing, and LeakSanitizer fails in some containers.
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def _load_cases():
    spec = importlib.util.spec_from_file_location("tb_cases", ROOT / "hls" / "tools" / "tb_cases.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tb_cases"] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


tb_cases = _load_cases()
CASES = tb_cases.all_cases()


@pytest.fixture(scope="module")
def asan_tb():
    subprocess.run(
        ["make", "-s", "-C", str(ROOT / "hls"), "csim-asan", f"PYTHON={sys.executable}"], check=True
    )
    return ASAN_TB


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("asan_vectors")
    for name, build in CASES.items():
        write(build(), out / name)
    return out


def test_the_testbench_is_instrumented(asan_tb):
    r = subprocess.run(
        [str(asan_tb)], env={**os.environ, "ASAN_OPTIONS": "help=1"}, capture_output=True, text=True
    )
    assert "AddressSanitizer" in r.stdout + r.stderr
    symbols = subprocess.run(["nm", str(asan_tb)], capture_output=True, text=True, check=True).stdout
    assert "__ubsan_handle" in symbols


@pytest.mark.parametrize("name", list(CASES))
def test_vector_under_sanitizers(asan_tb, vectors, name):
    r = subprocess.run(
        [str(asan_tb), str(vectors / name)],
        env={**os.environ, **SANITIZER_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 0 and r.stdout.startswith(f"PASS {name}:"), r.stdout + r.stderr[-2000:]


def test_an_implemented_op_must_give_its_own_status():
    # LOAD_LUT is a real op: its bad inputs accept only the status of its check, not BAD_OPCODE
    assert tb_cases.implemented("LOAD_LUT")
    st = abi()["status"]
    assert CASES["lut_unknown_table"]().statuses == (st["BAD_PARAM"],)
    assert CASES["lut_wrong_knot_count"]().statuses == (st["BAD_SIZE"],)
    assert CASES["load_lut_x_past_end"]().statuses == (st["BAD_ADDRESS"],)


def test_a_placeholder_op_is_recognised(tmp_path, monkeypatch):
    fake = tmp_path / "linear.h"
    fake.write_text("// OP_LINEAR: NOT IMPLEMENTED YET (placeholder)\n")
    monkeypatch.setattr(tb_cases, "OPS_DIR", tmp_path)
    assert not tb_cases.implemented("LINEAR")
    assert CASES["linear_rows_over_max"]().statuses == (abi()["status"]["BAD_OPCODE"],)
    fake.write_text("// OP_LINEAR: the matrix core\n")
    assert tb_cases.implemented("LINEAR")
    assert CASES["linear_rows_over_max"]().statuses == (abi()["status"]["BAD_SIZE"],)


def test_bad_descriptors_cover_every_op_and_kind():
    ops = {b.op for b in tb_cases.BAD_DESCRIPTORS}
    assert ops == set(tb_cases.OPS)
    names = " ".join(b.name for b in tb_cases.BAD_DESCRIPTORS)
    for kind in ("over_max", "zero_rows", "past_end", "misaligned", "wraps", "stride_short", "index"):
        assert kind in names
    assert len(tb_cases.BAD_PROGRAMS) >= 5
