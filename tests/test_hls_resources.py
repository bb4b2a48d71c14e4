"""The resource estimate (bench/hls_resources.py) follows config.h, through abi.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from engine_harness import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import hls_resources as hr  # noqa: E402

CFG = json.loads(hr.ABI_JSON.read_text())["config"]
MAXI = hr.maxi_pragmas()


def component(rep: dict, prefix: str) -> dict:
    return next(c for c in rep["components"] if c["component"].startswith(prefix))


def test_dsp_and_bram_rules():
    assert hr.dsp_per_product(16, 16) == 1  # one DSP48E2 per 16-bit MAC
    assert hr.dsp_per_product(26, 26) == 2 and hr.dsp_per_product(64, 64) == 12
    assert hr.bank_cost(2048, 18) == (1, 0)  # one BRAM36 at 18 x 2048
    assert hr.bank_cost(512, 36) == (0.5, 0)  # fits an 18K half
    assert hr.bank_cost(197, 16 * 384) == (85.5, 0)  # a wide, shallow K row store: 171 halves
    assert hr.bank_cost(16, 32) == (0, 16)  # 512 bits: distributed RAM


def test_the_current_config_is_inside_the_device():
    rep = hr.report(CFG, MAXI)
    assert rep["inside_device"], rep["utilisation"]
    assert rep["totals"]["dsp"] >= CFG["MC_ROWS"] * CFG["MC_COLS"]
    assert set(rep["over_margin"]) == {r for r, u in rep["utilisation"].items() if u > hr.MARGIN}


def test_matrix_core_counts_the_larger_mapping_not_the_sum():
    wide = hr.report(CFG, MAXI)
    narrow = hr.report({**CFG, "MC_COLS": CFG["MC_COLS"] // 2}, MAXI)
    attention = CFG["ATTN_KEYS"] * CFG["MAX_DIM"]
    assert component(wide, "matrix core")["dsp"] == max(CFG["MC_ROWS"] * CFG["MC_COLS"], attention)
    assert component(narrow, "matrix core")["dsp"] == max(CFG["MC_ROWS"] * CFG["MC_COLS"] // 2, attention)
    assert narrow["totals"]["dsp"] < wide["totals"]["dsp"]
    assert narrow["totals"]["bram36"] < wide["totals"]["bram36"]  # fewer W banks


@pytest.mark.parametrize("key", ["ATTN_KEYS", "VU_LANES", "MAX_TOKENS", "MAX_K"])
def test_buffers_follow_the_config(key):
    base = hr.report(CFG, MAXI)["totals"]
    bigger = hr.report({**CFG, key: CFG[key] * 2}, MAXI)["totals"]
    assert bigger["bram36"] > base["bram36"]


def test_cli_reads_the_json_it_is_given(tmp_path):
    abi = json.loads(hr.ABI_JSON.read_text())
    abi["config"]["MC_COLS"] = 16
    src, out = tmp_path / "abi.json", tmp_path / "res.json"
    src.write_text(json.dumps(abi))
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench/hls_resources.py"), "--abi", str(src), "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    rep = json.loads(out.read_text())
    assert rep["config"]["MC_COLS"] == 16
    assert component(rep, "matrix core")["dsp"] == max(CFG["MC_ROWS"] * 16, CFG["ATTN_KEYS"] * CFG["MAX_DIM"])
    assert "ESTIMATE" in r.stdout and "total (estimate)" in r.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench/hls_resources.py"), "--abi", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1
