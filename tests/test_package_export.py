"""`trilevel export` writes a complete, verifiable package; the host reads it with numpy only."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import tiny_vit
import torch
from trilevel_host import fixedpoint as fp
from trilevel_host import load_package

from trilevel.checkpoint import load_checkpoint


def test_manifest_describes_model_selector_formats_and_files():
    pkg = load_package(tiny_vit.package())
    m = pkg.manifest
    assert m["format_version"] == 1
    assert m["model"]["embed_dim"] == 32 and m["model"]["depth"] == 4 and m["model"]["num_patches"] == 16
    assert m["selector"]["locations"] == [1, 2]
    assert m["selector"]["tokens_per_stage"] == [16, 12, 9]  # ceil(0.7 * 16), ceil(0.7 * 12)
    assert m["selector"]["connections_per_stage"] == [6, 5]
    assert m["input"]["mean"] == [0.286] and m["input"]["std"] == [0.353]
    state = tiny_vit.build().state_dict()
    assert set(m["weights"]) == set(state)
    for name, t in state.items():
        e = m["weights"][name]
        w = pkg.tensor(name)
        assert w.dtype == np.int16 and list(w.shape) == list(t.shape) == e["shape"]
        # the format is the finest power of two that holds the weight's range
        assert e["frac_bits"] == fp.choose_frac_bits(e["max_abs"])
    assert "blocks.2.attn.ctx" in m["activations"] and "head.out" in m["activations"]
    assert not any(k.endswith(".attn.scores") for k in m["activations"])  # scores stay wide
    for rel, e in m["files"].items():
        assert len(e["sha256"]) == 64 and e["bytes"] > 0, rel


def test_float_weights_round_trip_within_half_an_lsb():
    pkg = load_package(tiny_vit.package())
    state = torch.load(tiny_vit.checkpoint(), weights_only=False)["model"]
    for name, t in state.items():
        f = pkg.frac_bits(name)
        err = np.abs(fp.dequantize(pkg.tensor(name), f) - t.double().numpy()).max()
        assert err <= 2.0 ** (-f - 1) + 1e-12, name


def test_example_subset_indices_are_the_checkpoints():
    pkg = load_package(tiny_vit.package())
    active = load_checkpoint(tiny_vit.checkpoint())["example_selector"]["active"].numpy()
    np.testing.assert_array_equal(pkg.array("example_subset.npy"), np.flatnonzero(active))
    assert pkg.manifest["example_subset"]["dataset_size"] == active.size


def test_package_without_example_level_and_reexport_replaces(tmp_path):
    from model_export.cli import main

    ckpt = load_checkpoint(tiny_vit.checkpoint())
    model = tiny_vit.build()
    model.load_state_dict(ckpt["model"])
    path = tiny_vit.save(model, tmp_path / "dense.pt", example_active=None)
    out = tmp_path / "pkg"
    args = tiny_vit.quick_export_args(path, out, calib_images=32)
    assert main(args) == 0
    assert load_package(out).manifest["example_subset"] is None
    assert main(args) == 0  # an earlier package is replaced, nothing else is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.pt", "pkg"]
    assert load_package(out).manifest["golden"] is None


def test_host_loads_and_runs_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from trilevel_host import load_package\n"
        "from trilevel_host.reference import ReferenceModel\n"
        f"pkg = load_package({str(tiny_vit.package())!r})\n"
        "ref = ReferenceModel.from_package(pkg)\n"
        "x, f = pkg.golden('forward/input')\n"
        "fwd = ref.forward(x.astype('int64'))\n"
        "print(fwd.logits.shape)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(3, 10)"


def test_manifest_is_plain_json_with_sorted_file_list():
    text = (tiny_vit.package() / "manifest.json").read_text()
    files = list(json.loads(text)["files"])
    assert files == sorted(files)
