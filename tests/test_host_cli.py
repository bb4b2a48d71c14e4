"""`trilevel-host infer`: results on both backends, and one error line for every kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import fake_pynq
import numpy as np
import pytest
import tiny_vit
from engine_harness import engine
from test_host_board import make_bitstream
from test_host_data import write_split
from trilevel_host.cli import main
from trilevel_host.engine.abi import abi
from trilevel_host.engine.program import build_program
from trilevel_host.package import load_package


@pytest.fixture(scope="module")
def package():
    engine()
    return tiny_vit.package()


@pytest.fixture
def pynq(monkeypatch):
    fake_pynq.reset()
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq)
    yield fake_pynq
    fake_pynq.reset()


def run(capsys, *args):
    rc = main(["infer", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_csim_inference_agrees_with_the_oracle(capsys, tmp_path, package):
    out_file = tmp_path / "res" / "result.json"
    rc, out, err = run(capsys, "--package", package, "--backend", "csim", "--limit", 6, "--output", out_file)
    assert rc == 0, err
    r = json.loads(out_file.read_text())
    assert r["images"] == 6 and r["backend"] == "csim"
    assert r["top1_agreement_with_oracle"] == 1.0 and r["logits_bit_exact_with_oracle"] == 1.0
    assert r["kept_tokens_equal_to_oracle"] == 1.0 and r["accuracy"] == r["oracle_accuracy"]
    lat = r["latency_s"]
    assert lat["label"] == "csim wall time (not a hardware latency)" and len(lat["per_sample"]) == 6
    assert "csim wall time (not a hardware latency)" in out and "agreement with the oracle 100.00%" in out


def test_board_inference_is_labelled_measured(capsys, tmp_path, package, pynq):
    bit = make_bitstream(tmp_path / "bits")
    out_file = tmp_path / "r.json"
    rc, out, err = run(capsys, "--package", package, "--backend", "board", "--bitstream", bit, "--limit", 3,
                       "--output", out_file)  # fmt: skip
    assert rc == 0, err
    r = json.loads(out_file.read_text())
    assert r["latency_s"]["label"] == "measured" and r["logits_bit_exact_with_oracle"] == 1.0


def test_missing_or_corrupt_package(capsys, tmp_path, package):
    rc, _, err = run(capsys, "--package", tmp_path / "nope", "--limit", 1)
    assert rc == 2 and "is not a directory" in one_error_line(err)
    broken = tmp_path / "pkg"
    shutil.copytree(package, broken)
    f = broken / "weights" / "head.weight.npy"
    f.write_bytes(f.read_bytes()[:-10])
    rc, _, err = run(capsys, "--package", broken, "--limit", 1)
    assert rc == 2 and "weights/head.weight.npy is truncated" in one_error_line(err)


def test_bitstream_problems(capsys, tmp_path, package, pynq):
    rc, _, err = run(capsys, "--package", package, "--backend", "board", "--limit", 1)
    assert rc == 2 and "--backend board needs --bitstream" in one_error_line(err)
    bit = make_bitstream(tmp_path / "a", hwh=False)
    rc, _, err = run(capsys, "--package", package, "--backend", "board", "--bitstream", bit, "--limit", 1)
    assert rc == 2 and "trilevel.hwh is missing beside it" in one_error_line(err)
    bit = make_bitstream(tmp_path / "b", config_hash="f" * 64)
    rc, _, err = run(capsys, "--package", package, "--backend", "board", "--bitstream", bit, "--limit", 1)
    assert rc == 2 and "built for another engine config" in one_error_line(err)
    assert pynq.LOG == []  # refused before any register was touched


def test_images_of_the_wrong_size(capsys, tmp_path, package):
    write_split(tmp_path / "data", np.zeros((3, 32, 32)), np.zeros(3))
    rc, _, err = run(capsys, "--package", package, "--data", tmp_path / "data", "--limit", 2)
    assert (
        rc == 2
        and "images are (1, 32, 32) (channels, height, width) but the package takes (1, 28, 28)" in err
    )
    one_error_line(err)


def test_engine_timeout_and_error_status(capsys, tmp_path, package, pynq):
    bit = make_bitstream(tmp_path / "bits")
    out_file = tmp_path / "keep.json"
    out_file.write_text("earlier result")
    pynq.HANG_FROM = 3  # the table load and one image finish, the next image hangs
    rc, _, err = run(capsys, "--package", package, "--backend", "board", "--bitstream", bit, "--limit", 4,
                     "--timeout", 0.05, "--output", out_file)  # fmt: skip
    assert rc == 1 and "did not finish within 0.05 s" in one_error_line(err)
    assert out_file.read_text() == "earlier result"  # nothing already written is lost

    pynq.reset()
    prog = build_program(load_package(package))
    k = next(i for i, op in enumerate(prog.forward) if op.name == "blocks.2.select")
    fwd_addr, _ = prog.program("forward")

    def corrupt(ddr, regs):  # a shift beyond +-62 in the SELECT descriptor: BAD_PARAM, tagged with it
        if regs["prog"] == fwd_addr:
            word = fwd_addr + k * abi()["abi"]["DESC_BYTES"] + 4 * abi()["desc_words"]["SH0"]
            ddr[word : word + 4] = np.array([1000], dtype="<u4").view(np.uint8)

    pynq.BEFORE_START = corrupt
    rc, _, err = run(capsys, "--package", package, "--backend", "board", "--bitstream", bit, "--limit", 2)
    line = one_error_line(err)
    assert rc == 1 and f"BAD_PARAM at op {len(prog.setup) + k + 1} (SELECT blocks.2.select)" in line


def test_cli_runs_without_torch_and_without_tqdm(tmp_path, package):
    """The board's CPU has neither: the whole inference path is numpy (plain progress lines)."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["tqdm"] = None
        from trilevel_host.cli import main
        rc = main(["infer", "--package", sys.argv[1], "--limit", "2", "--output", sys.argv[2]])
        sys.exit(rc if "torch" not in sys.modules or sys.modules["torch"] is None else 99)
        """
    )
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-c", code, str(package), str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2/2 images" in p.stderr and json.loads(out.read_text())["logits_bit_exact_with_oracle"] == 1.0
