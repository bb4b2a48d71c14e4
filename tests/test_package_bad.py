"""A broken package is refused with a clear error; a bad export leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import tiny_vit
from trilevel_host import PackageError, load_package

from model_export.cli import main as export_main

WEIGHT = "weights/blocks.0.attn.qkv.weight.npy"


@pytest.fixture
def pkg(tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(tiny_vit.package(), dst)
    return dst


def _manifest(p):
    return json.loads((p / "manifest.json").read_text())


def _write_manifest(p, m):
    (p / "manifest.json").write_text(json.dumps(m))


def _rehash(p, rel):
    """Update the manifest's size and hash of ``rel`` so only deeper checks can catch it."""
    m = _manifest(p)
    data = (p / rel).read_bytes()
    m["files"][rel].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    _write_manifest(p, m)


def test_good_copy_loads(pkg):
    assert load_package(pkg).version == 1


def test_truncated_file(pkg):
    f = pkg / WEIGHT
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(PackageError, match=r"qkv.weight.npy is truncated"):
        load_package(pkg)


def test_missing_file(pkg):
    (pkg / "luts/exp.npy").unlink()
    with pytest.raises(PackageError, match=r"luts/exp.npy is missing"):
        load_package(pkg)


def test_missing_manifest(pkg):
    (pkg / "manifest.json").unlink()
    with pytest.raises(PackageError, match="manifest.json is missing"):
        load_package(pkg)


def test_hash_mismatch(pkg):
    f = pkg / WEIGHT
    b = bytearray(f.read_bytes())
    b[-1] ^= 0x01
    f.write_bytes(bytes(b))
    with pytest.raises(PackageError, match="sha256 mismatch"):
        load_package(pkg)


def test_wrong_dtype(pkg):
    arr = np.load(pkg / WEIGHT)
    np.save(pkg / WEIGHT, arr.astype(np.int32))
    _rehash(pkg, WEIGHT)
    with pytest.raises(PackageError, match="has dtype int32, manifest says int16"):
        load_package(pkg)


def test_wrong_shape(pkg):
    arr = np.load(pkg / WEIGHT)
    np.save(pkg / WEIGHT, arr.T.copy())
    _rehash(pkg, WEIGHT)
    with pytest.raises(PackageError, match="has shape"):
        load_package(pkg)


def test_unknown_format_version(pkg):
    m = _manifest(pkg)
    m["format_version"] = 99
    _write_manifest(pkg, m)
    with pytest.raises(PackageError, match="unknown format version 99"):
        load_package(pkg)


def test_manifest_not_json(pkg):
    (pkg / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        load_package(pkg)


def test_weight_entry_disagreeing_with_its_file(pkg):
    m = _manifest(pkg)
    m["weights"]["head.weight"]["shape"] = [1, 2]
    _write_manifest(pkg, m)
    with pytest.raises(PackageError, match=r"'head.weight'.*shape"):
        load_package(pkg)


def _export(tmp_path, ckpt, out):
    return export_main(tiny_vit.quick_export_args(ckpt, out))


def test_export_missing_checkpoint(tmp_path, capsys):
    assert _export(tmp_path, tmp_path / "nope.pt", tmp_path / "out") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert not (tmp_path / "out").exists()


def test_export_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_vit.checkpoint().read_bytes()[:1000])
    assert _export(tmp_path, bad, tmp_path / "out") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_export_refuses_an_output_that_is_not_a_package(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert _export(tmp_path, tiny_vit.checkpoint(), out) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a model package" in err[0]
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_export_refuses_a_model_the_engine_cannot_run(tmp_path, capsys):
    """LayerScale has no engine op: one error line naming it, and no package."""
    import torch

    from trilevel import models
    from trilevel.patch import patch

    kwargs = {**tiny_vit.KWARGS, "init_values": 1e-5}
    model = patch(models.create(tiny_vit.TIMM_NAME, kwargs), 0.7, 0.5, tiny_vit.LOCATIONS)
    path = tiny_vit.save(model, tmp_path / "ls.pt")
    ckpt = torch.load(path, weights_only=False)
    ckpt["model_spec"]["kwargs"] = kwargs
    torch.save(ckpt, path)
    assert _export(tmp_path, path, tmp_path / "out") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LayerScale" in err[0]
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_model_of_another_input_size(tmp_path, capsys):
    """A model trained on resized or 3-channel images: the package has no resize step, so say so."""
    import torch

    from trilevel import models
    from trilevel.patch import patch

    kwargs = {**tiny_vit.KWARGS, "in_chans": 3}
    model = patch(models.create(tiny_vit.TIMM_NAME, kwargs), 0.7, 0.5, tiny_vit.LOCATIONS)
    path = tiny_vit.save(model, tmp_path / "rgb.pt")
    ckpt = torch.load(path, weights_only=False)
    ckpt["model_spec"]["kwargs"] = kwargs
    torch.save(ckpt, path)
    assert _export(tmp_path, path, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset's own size" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_failure_mid_export_leaves_no_partial_package(tmp_path, monkeypatch):
    import model_export.onnx_export as onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure after the weights were written")

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    out = tmp_path / "out"
    args = ["--checkpoint", str(tiny_vit.checkpoint()), "--output", str(out), "--golden-samples", "0",
            "--calib-images", "16"]  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated"):
        export_main(args)
    assert list(tmp_path.iterdir()) == []
