"""The PYNQ board backend against a fake pynq (tests/fake_pynq.py) that runs the C-sim on its "DDR"."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import fake_pynq
import numpy as np
import pytest
import tiny_vit
from engine_harness import ROOT, engine
from trilevel_host import load_package
from trilevel_host.device.base import EngineError, EngineTimeout
from trilevel_host.device.board import VLNV, BoardDevice, BoardError, check_bitstream
from trilevel_host.device.csim import CSimDevice, CSimEngine
from trilevel_host.engine.abi import abi, config_hash
from trilevel_host.engine.program import build_program
from trilevel_host.runner import EngineRunner


@pytest.fixture(scope="module")
def pkg():
    return load_package(tiny_vit.package())


@pytest.fixture(scope="module")
def prog(pkg):
    engine()  # builds the C-sim library
    return build_program(pkg)


@pytest.fixture
def pynq(monkeypatch):
    fake_pynq.reset()
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq)
    yield fake_pynq
    fake_pynq.reset()


def _manifest_tool():
    """hls/tools/bitstream_manifest.py, the synthesis flow's writer of bitstreams/<name>.json."""
    spec = importlib.util.spec_from_file_location(
        "bitstream_manifest", ROOT / "hls/tools/bitstream_manifest.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_bitstream(folder, name="trilevel", hwh=True, **manifest):
    """A .bit with its .hwh and the manifest the synthesis flow writes (the fake pynq never reads
    the bitstream's bytes); ``manifest`` overrides entries of it."""
    folder.mkdir(parents=True, exist_ok=True)
    bit = folder / f"{name}.bit"
    bit.write_bytes(b"\x00" * 64)
    bit.with_suffix(".hwh").write_text("<hwh/>")
    m = _manifest_tool().manifest(folder, name, "xczu9eg-ffvb1156-2-e", "zcu102", 150, VLNV)
    if not hwh:
        bit.with_suffix(".hwh").unlink()
    bit.with_suffix(".json").write_text(json.dumps(m | manifest))
    return bit


def test_the_config_hash_is_the_headers():
    assert config_hash() == _manifest_tool().config_hash(), (
        "abi.json is stale: python hls/tools/gen_abi_json.py"
    )


def test_bitstream_checks(tmp_path):
    assert check_bitstream(make_bitstream(tmp_path / "ok")).name == "trilevel.hwh"
    with pytest.raises(BoardError, match=r"trilevel.hwh is missing beside it"):
        check_bitstream(make_bitstream(tmp_path / "nohwh", hwh=False))
    with pytest.raises(BoardError, match="built for another engine config"):
        check_bitstream(make_bitstream(tmp_path / "other", config_hash={"sha256": "0" * 64}))
    with pytest.raises(BoardError, match="holds IP xilinx.com:hls:other:1.0"):
        check_bitstream(make_bitstream(tmp_path / "ip", ip_vlnv="xilinx.com:hls:other:1.0"))
    bit = make_bitstream(tmp_path / "changed")
    bit.with_suffix(".hwh").write_text("<hwh version='2'/>")
    with pytest.raises(BoardError, match="trilevel.hwh is not the file its manifest describes"):
        check_bitstream(bit)
    with pytest.raises(BoardError, match="has engine ABI 99, this host speaks ABI"):
        check_bitstream(make_bitstream(tmp_path / "abi", abi_version=99))
    bit = make_bitstream(tmp_path / "nojson")
    bit.with_suffix(".json").unlink()
    with pytest.raises(BoardError, match="trilevel.json is missing"):
        check_bitstream(bit)
    bit.with_suffix(".json").write_text("{not json")
    with pytest.raises(BoardError, match="is not valid JSON"):
        check_bitstream(bit)
    with pytest.raises(BoardError, match="is not a .bit file"):
        check_bitstream(tmp_path / "missing.bit")


def _csim_run(monkeypatch, prog, x):
    """Inference on the C-sim backend, recording each start's arguments and the arena after it."""
    calls = []
    real = CSimEngine.run

    def spy(self, arena, p, n):
        r = real(self, arena, p, n)
        calls.append((arena.nbytes, p, n, arena.copy()))
        return r

    monkeypatch.setattr(CSimEngine, "run", spy)
    runner = EngineRunner(prog, CSimDevice())
    out = runner.infer(x)
    monkeypatch.setattr(CSimEngine, "run", real)
    return out, calls


@pytest.mark.parametrize("split", [True, False], ids=["mem_1-mem_2", "mem-64bit"])
def test_board_backend_drives_the_engine_like_the_csim(pynq, monkeypatch, tmp_path, pkg, prog, split):
    x = pkg.golden("forward/input")[0][0]
    ref, calls = _csim_run(monkeypatch, prog, x)
    pynq.SPLIT_ADDRESSES = split
    dev = BoardDevice(make_bitstream(tmp_path))
    runner = EngineRunner(prog, dev)
    out = runner.infer(x)
    base = dev.buf.device_address
    bases = (
        [("mem_1", base), ("mem_2", 0), ("wmem_1", base), ("wmem_2", 0)]
        if split
        else [("mem", base), ("wmem", base)]
    )
    # the same registers, by name, per start: the C-sim library takes the same arguments
    expect = []
    for nbytes, p, n, _ in calls:
        expect += bases + [("mem_bytes", nbytes), ("prog", p), ("n_desc", n), ("CTRL.AP_START", 1)]
    assert pynq.LOG == expect
    assert [(p, n) for _, p, n, _ in calls] == [prog.program("setup"), prog.program("forward")]
    # the engine saw the same bytes: descriptors, weights, input, and every output it wrote
    ddr = pynq.DDR[base]
    np.testing.assert_array_equal(ddr, calls[-1][3])
    np.testing.assert_array_equal(out.logits, ref.logits)
    for a, b in zip(out.keep_idx + out.connections, ref.keep_idx + ref.connections, strict=True):
        np.testing.assert_array_equal(a, b)
    # per sample only the input is flushed to DDR
    t = prog.arena.tensors["input"]
    assert dev.buf.flushes[-1] == (t.addr, t.nbytes) and dev.buf.flushes[:-1] == [(0, prog.arena.size)]


def test_results_are_invalidated_before_they_are_read(pynq, tmp_path, prog, pkg):
    dev = BoardDevice(make_bitstream(tmp_path))
    runner = EngineRunner(prog, dev)
    out = runner.infer(pkg.golden("forward/input")[0][0])
    np.testing.assert_array_equal(out.logits, pkg.golden("forward/head.out")[0][0])
    t = prog.arena.tensors["head.out"]
    pynq.DDR[dev.buf.device_address][t.addr : t.addr + 2] = [
        0x34,
        0x12,
    ]  # the engine writes DDR behind the cache
    assert runner.read("head.out")[0, 0] == 0x1234


def test_done_that_never_rises_is_a_timeout(pynq, tmp_path, prog, pkg):
    dev = BoardDevice(make_bitstream(tmp_path))
    runner = EngineRunner(prog, dev, timeout=0.05)
    dev.ip.hang = True
    with pytest.raises(EngineTimeout, match=r"did not finish within 0.05 s \(ap_done never rose\)"):
        runner.infer(pkg.golden("forward/input")[0][0])
    with pytest.raises(BoardError, match="still busy"):
        runner.infer(pkg.golden("forward/input")[0][0])


def test_engine_error_status_names_the_op(pynq, tmp_path, prog, pkg):
    dev = BoardDevice(make_bitstream(tmp_path))
    runner = EngineRunner(prog, dev)
    k = next(i for i, op in enumerate(prog.forward) if op.name == "blocks.1.mlp.fc1")
    addr, _ = prog.program("forward")
    word = addr + k * abi()["abi"]["DESC_BYTES"] + 4 * abi()["desc_words"]["SH1"]
    dev.write(word, np.array([99], dtype="<u4").view(np.uint8))  # a shift the engine refuses
    tag = len(prog.setup) + k + 1
    with pytest.raises(EngineError, match=rf"BAD_PARAM at op {tag} \(LINEAR blocks.1.mlp.fc1\)") as e:
        runner.infer(pkg.golden("forward/input")[0][0])
    assert e.value.result.err_tag == tag


def test_board_backend_without_pynq(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(BoardError, match=r"needs pynq \(pip install 'trilevel_host\[board\]'\)"):
        BoardDevice(make_bitstream(tmp_path))


def test_host_package_does_not_import_pynq():
    code = "import sys, trilevel_host.cli, trilevel_host.device.board, trilevel_host.runner; print('pynq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
