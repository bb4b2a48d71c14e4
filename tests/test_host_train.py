"""`trilevel-host train` on the C-sim, the trained package written back (numpy) and read into PyTorch."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import tiny_vit
import torch
from trilevel_host import package_writer
from trilevel_host.cli import main
from trilevel_host.data import load_idx_split, normalize, quantize_images
from trilevel_host.device.csim import CSimDevice
from trilevel_host.package import load_package
from trilevel_host.package_writer import PackageWriteError, write_trained_package
from trilevel_host.reference.model import ReferenceModel
from trilevel_host.runner import EngineRunner
from trilevel_host.train_cli import sample_order
from trilevel_host.trainer import EngineTrainer

from model_export.import_package import model_from_package


@functools.cache
def pkg():
    return load_package(tiny_vit.package())


@functools.cache
def trained(tmp_root: str):
    """5 steps of the CLI on the tiny package: (rc, result dict, output path)."""
    out = f"{tmp_root}/trained"
    rc = main(["train", "--package", str(pkg().root), "--steps", "5", "--lr", "0.001", "--output", out,
               "--eval", "5", "--result", f"{tmp_root}/r.json"])  # fmt: skip
    return rc, json.loads(open(f"{tmp_root}/r.json").read()), out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(str(tmp_path_factory.mktemp("train")))


def test_train_cli_five_steps(run):
    rc, r, out = run
    assert rc == 0
    assert r["steps"] == 5 and len(r["loss"]) == 5 and np.all(np.isfinite(r["loss"]))
    assert r["seconds_per_step"]["label"].startswith("csim wall time")
    assert (
        r["step_latency_estimated_ms"]["label"].startswith("estimated")
        and r["step_latency_estimated_ms"]["ms"] > 0
    )
    subset = pkg().array(pkg().manifest["example_subset"]["file"])
    assert set(r["sample_indices"]) <= set(subset.tolist())
    p2 = load_package(out)
    assert p2.manifest["golden"] is None and p2.manifest["onnx"] is None
    assert "dropped" in p2.manifest["producer"]["notes"]
    changed = [k for k in p2.manifest["weights"] if not np.array_equal(p2.tensor(k), pkg().tensor(k))]
    assert changed  # SGD moved some weights


def test_written_package_forward_equals_in_memory_weights(tmp_path):
    t = EngineTrainer.from_package(pkg(), CSimDevice(), lr=0.01)
    x, _ = pkg().golden("forward/input")
    labels, _ = pkg().golden("labels")
    for i in range(2):
        t.train_step(x[i], int(labels[i]))
    weights = {k: t.weight(k) for k in pkg().manifest["weights"]}
    p2 = load_package(write_trained_package(pkg(), weights, tmp_path / "p2"))
    on_device = t.infer(x[0]).logits  # the weights still in the trainer's device
    ref = ReferenceModel.from_package(p2).forward(x[:1]).logits[0]
    np.testing.assert_array_equal(ref, on_device)
    np.testing.assert_array_equal(EngineRunner.from_package(p2, CSimDevice()).infer(x[0]).logits, on_device)


def test_set_lr_equals_building_at_that_rate():
    x, _ = pkg().golden("forward/input")
    a = EngineTrainer.from_package(pkg(), CSimDevice(), lr=0.01)
    a.set_lr(0.05)
    b = EngineTrainer.from_package(pkg(), CSimDevice(), lr=0.05)
    a.train_step(x[0], 3)
    b.train_step(x[0], 3)
    for k in pkg().manifest["weights"]:
        np.testing.assert_array_equal(a.master(k), b.master(k), err_msg=k)


def test_package_from_the_engine_loads_in_pytorch_with_the_same_predictions(run):
    """The issue's must-show: package -> torch model agrees with the engine's oracle (>= 99 % top-1)."""
    p2 = load_package(run[2])
    images, _ = load_idx_split("fashion-mnist", "test")
    images = images[:300]
    oracle = ReferenceModel.from_package(p2).forward(quantize_images(images, p2.manifest)).logits.argmax(-1)
    with torch.no_grad():
        torch_pred = model_from_package(p2)(torch.from_numpy(normalize(images, p2.manifest["input"]))).argmax(
            -1
        )
    assert (torch_pred.numpy() == oracle).mean() >= 0.99


@pytest.mark.parametrize("lr", ["0", "-0.01", "inf", "nan", "100", "1e-9"])
def test_bad_lr_is_one_line_and_exit_2(lr, tmp_path, capsys):
    rc = main(
        ["train", "--package", str(pkg().root), "--steps", "1", "--lr", lr, "--output", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --lr")
    assert not (tmp_path / "o").exists()


def test_refuses_an_output_that_is_not_a_package(tmp_path, capsys):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    rc = main(["train", "--package", str(pkg().root), "--steps", "1", "--lr", "0.001",
               "--output", str(tmp_path / "keep")])  # fmt: skip
    assert rc == 2 and "not a model package" in capsys.readouterr().err
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"
    with pytest.raises(PackageWriteError, match="source package"):
        write_trained_package(pkg(), {}, pkg().root)


def test_engine_error_names_the_op(tmp_path, monkeypatch, capsys):
    """A label the loss op refuses (written past the host's check) stops the engine: one line with the op."""

    def bad_step(self, image, label):
        cfg = self.program.cfg
        self.write("input", np.asarray(image).reshape(cfg.in_chans * cfg.img_size, cfg.img_size))
        self.write("label", np.array([[cfg.num_classes + 5]]))
        return self.run("train")

    monkeypatch.setattr(EngineTrainer, "train_step", bad_step)
    rc = main(["train", "--package", str(pkg().root), "--steps", "2", "--lr", "0.001", "--eval", "0",
               "--output", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and err.startswith("error: the engine stopped with") and "loss" in err
    assert not (tmp_path / "o").exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    weights = {k: pkg().tensor(k) for k in pkg().manifest["weights"]}
    write_trained_package(pkg(), weights, tmp_path / "p")
    before = sorted(p.name for p in (tmp_path / "p").rglob("*"))
    calls = []

    def failing_save(*a, **k):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        return np.lib.format.write_array(open(a[0], "wb"), a[1])

    monkeypatch.setattr(package_writer.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_trained_package(pkg(), weights, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").rglob("*")) == before
    assert load_package(tmp_path / "p")
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary folder left


def test_sample_order_walks_epochs_of_the_subset():
    subset = np.array([3, 8, 11, 20])
    order = sample_order(subset, 10, seed=1)
    assert sorted(order[:4]) == sorted(order[4:8]) == subset.tolist()
    assert set(order[8:]) <= set(subset.tolist())
    np.testing.assert_array_equal(order, sample_order(subset, 10, seed=1))
