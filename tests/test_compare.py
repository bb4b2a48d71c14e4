"""`trilevel-host compare`: the Table 3 rows, estimated or measured (never mixed), and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from trilevel_host.cli import main
from trilevel_host.compare import IMAGENET_TRAIN_IMAGES, KEEPS, MODELS
from trilevel_host.engine.synthetic import synthetic_package

GPU = {
    "gpu_name": "Test GPU",
    "rows": [
        {
            "model": m,
            "keep": k,
            "infer_ms_median": 1.0 + k,
            "train_ms_median": 3.0 + k,
            "train_img_per_s": 1000.0,
        }
        for m in MODELS
        for k in KEEPS
    ],
}


@pytest.fixture
def gpu_file(tmp_path):
    p = tmp_path / "gpu.json"
    p.write_text(json.dumps(GPU))
    return p


def _run(capsys, *args) -> tuple[int, str]:
    rc = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out + err


def test_estimated_rows_charts_and_markdown(tmp_path, gpu_file, capsys):
    rc, out = _run(capsys, "--gpu", gpu_file, "--output-dir", tmp_path)
    assert rc == 0, out
    data = json.loads((tmp_path / "latency_compare.json").read_text())
    rows = data["rows"]
    assert [(r["model"], r["keep"]) for r in rows] == [(m, k) for m in MODELS for k in KEEPS]
    for r in rows:
        assert r["fpga_source"] == "estimated" and r["gpu_name"] == "Test GPU"
        assert r["fpga_infer_ms"] == r["estimated_infer_ms"] > r["mac_array_bound_ms"] > 0
        assert r["gpu_infer_ms"] == 1.0 + r["keep"] and r["gpu_train_ms"] == 3.0 + r["keep"]
        assert r["gpu_epoch_h_batch1"] == pytest.approx(
            (3.0 + r["keep"]) * IMAGENET_TRAIN_IMAGES * r["keep"] / 3.6e6
        )
        assert r["fpga_train_ms"] == r["estimated_train_ms"] > r["fpga_infer_ms"]
        assert r["fpga_epoch_h"] == pytest.approx(
            r["fpga_train_ms"] * IMAGENET_TRAIN_IMAGES * r["keep"] / 3.6e6
        )
    for m in MODELS:
        mine = [r for r in rows if r["model"] == m]
        assert mine[0]["macs_saving"] == 0.0
        assert all(a["macs_saving"] < b["macs_saving"] for a, b in zip(mine, mine[1:]))
        assert all(a["fpga_infer_ms"] > b["fpga_infer_ms"] for a, b in zip(mine, mine[1:]))
    tiny_dense = rows[0]
    assert tiny_dense["paper_infer_ms"] == 10.91 and tiny_dense["paper_epoch_h"] == 13.79
    assert rows[1]["paper_epoch_h"] is None  # the paper gives no epoch time at 0.9
    md = (tmp_path / "latency_compare.md").read_text()
    assert "FPGA infer ms (estimated)" in md and "FPGA infer ms (measured)" not in md
    for png in ("latency_compare.png", "latency_cycles_by_op.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _board_result(tmp_path, model: str, keep: float, median_s: float, backend: str = "board"):
    pkg = tmp_path / f"pkg_{keep}"
    pkg.mkdir()
    (pkg / "manifest.json").write_text(json.dumps(synthetic_package("tiny").manifest | {
        "model": {"timm_name": model},
        "selector": {"locations": [3, 6, 9] if keep < 1 else [], "token_keep": keep, "attn_keep": 0.3},
    }))  # fmt: skip
    r = tmp_path / f"board_{keep}.json"
    r.write_text(json.dumps({"package": str(pkg), "backend": backend, "latency_s": {"median": median_s}}))
    return r


def test_measured_columns_are_measured_only(tmp_path, gpu_file, capsys):
    tiny = "deit_tiny_patch16_224"
    m1 = _board_result(tmp_path, tiny, 1.0, 0.012)
    m2 = _board_result(tmp_path, tiny, 0.7, 0.008)
    rc, out = _run(capsys, "--gpu", gpu_file, "--output-dir", tmp_path, "--no-plots", "--measured", m1, m2)
    assert rc == 0, out
    rows = {
        (r["model"], r["keep"]): r
        for r in json.loads((tmp_path / "latency_compare.json").read_text())["rows"]
    }
    assert rows[(tiny, 1.0)]["fpga_infer_ms"] == pytest.approx(12.0)
    assert rows[(tiny, 0.7)]["fpga_infer_ms"] == pytest.approx(8.0)
    assert rows[(tiny, 0.9)]["fpga_infer_ms"] is None  # not measured: blank, not the estimate
    assert all(r["fpga_source"] == "measured" and r["estimated_infer_ms"] > 0 for r in rows.values())
    # no board format for training results yet: the measured training column is blank, not the estimate
    assert all(r["fpga_train_ms"] is None and r["estimated_train_ms"] > 0 for r in rows.values())
    assert not (tmp_path / "latency_compare.png").exists()


@pytest.mark.parametrize("bad", ["not json", json.dumps({"backend": "board"})])
def test_a_bad_measurement_file_is_one_error_line(tmp_path, gpu_file, capsys, bad):
    f = tmp_path / "bad.json"
    f.write_text(bad)
    rc, out = _run(capsys, "--gpu", gpu_file, "--output-dir", tmp_path, "--measured", f)
    assert rc == 2 and out.startswith("error:") and out.count("\n") == 1
    assert not (tmp_path / "latency_compare.json").exists()


def test_a_csim_run_is_not_a_measurement(tmp_path, gpu_file, capsys):
    f = _board_result(tmp_path, "deit_tiny_patch16_224", 1.0, 5.0, backend="csim")
    rc, out = _run(capsys, "--gpu", gpu_file, "--output-dir", tmp_path, "--measured", f)
    assert rc == 2 and "only board runs" in out


def test_a_missing_gpu_file_is_one_error_line(tmp_path, capsys):
    rc, out = _run(capsys, "--gpu", tmp_path / "none.json", "--output-dir", tmp_path)
    assert rc == 2 and out.startswith("error:") and "gpu_latency" in out


def test_the_host_package_imports_without_matplotlib():
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import trilevel_host.cli, trilevel_host.compare, trilevel_host.compare_plots\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
