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
    assert hr.bank_cost(197, 16 * 384) == (85.5, 0)  # a wide, shallow row store: 171 halves
    assert hr.bank_cost(197, 16 * 384, tdp=True) == (171, 0)  # read twice a cycle: 36 bits per BRAM36
    assert hr.bank_cost(1025, 32, tdp=True) == (2, 0)  # a table replica one knot past 1024
    assert hr.bank_cost(16, 32) == (0, 16)  # 512 bits: distributed RAM


def test_the_current_config_fits_in_dsps_and_block_rams():
    """config.h is chosen so that DSPs and BRAM36 stay within the margin; the rough LUT figure is
    reported as it comes (over_margin says which resources are over)."""
    rep = hr.report(CFG, MAXI)
    assert rep["utilisation"]["dsp"] <= hr.MARGIN and rep["utilisation"]["bram36"] <= hr.MARGIN
    assert rep["totals"]["dsp"] >= CFG["MC_ROWS"] * CFG["MC_COLS"]
    assert set(rep["over_margin"]) == {r for r, u in rep["utilisation"].items() if u > hr.MARGIN}


def test_vector_lanes_cost_dsps():
    base = hr.report(CFG, MAXI)["totals"]["dsp"]
    assert hr.report({**CFG, "VU_LANES": 2 * CFG["VU_LANES"]}, MAXI)["totals"]["dsp"] > base


def test_one_multiplier_array_for_every_matmul():
    """The array counts MAC_LANES once, not once per op that multiplies on it; fewer lanes cost
    fewer DSPs, as long as the attention's mappings still fit."""
    rep = hr.report(CFG, MAXI)
    mac = CFG["MC_ROWS"] * CFG["MC_COLS"]
    assert component(rep, "multiplier array")["dsp"] == mac
    assert max(hi for _, _, hi, *_ in hr.array_lane_mappings(CFG)) <= mac  # the C++ static_asserts this
    narrow = hr.report({**CFG, "MC_ROWS": CFG["MC_ROWS"] - 4}, MAXI)
    assert component(narrow, "multiplier array")["dsp"] == mac - 4 * CFG["MC_COLS"]
    tiny = hr.report({**CFG, "MC_ROWS": 8}, MAXI)  # 512 lanes: the attention's 1536 do not fit
    assert component(tiny, "multiplier array")["dsp"] == CFG["ATTN_KEYS"] * CFG["MAX_DIM"]
    assert "refuses" in component(tiny, "multiplier array")["assumption"]


def test_forward_and_backward_vector_multipliers_are_both_counted():
    rep = hr.report(CFG, MAXI)
    fwd = [c for c in rep["components"] if c["component"].startswith("vector multipliers, fwd")]
    bwd = [c for c in rep["components"] if c["component"].startswith("vector multipliers, bwd")]
    assert {c["component"].split(": ")[1] for c in bwd} >= {"LAYERNORM_BWD", "GELU_BWD", "SGD"}
    assert all(c["dsp"] > 0 for c in fwd + bwd)
    mac = CFG["MC_ROWS"] * CFG["MC_COLS"]
    assert rep["totals"]["dsp"] == mac + sum(c["dsp"] for c in fwd + bwd)


def test_the_backward_has_no_memories_of_its_own_beyond_small_lists():
    """The big memories are the shared ones of buffers.h; no backward op declares a large buffer."""
    rep = hr.report(CFG, MAXI)
    shared = sum(c["bram36"] for c in rep["components"] if c["component"].startswith("shared"))
    backward = sum(c["bram36"] for c in rep["components"] if c["component"].split(": ")[-1].endswith("_BWD"))
    assert shared > 0.8 * rep["totals"]["bram36"] and backward < 10


@pytest.mark.parametrize("key", ["ATTN_KEYS", "MAX_TOKENS", "MAX_K", "MAX_DIM"])
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
    assert component(rep, "multiplier array")["dsp"] == max(
        CFG["MC_ROWS"] * 16, CFG["ATTN_KEYS"] * CFG["MAX_DIM"]
    )
    assert "ESTIMATE" in r.stdout and "total (estimate)" in r.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench/hls_resources.py"), "--abi", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1
