"""`trilevel train`: trains on synthetic data, resumes exactly, refuses bad input in one line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from trilevel.checkpoint import load_checkpoint
from trilevel.cli import main

TINY = [
    "--model", "fmnist-tiny", "--dataset", "synthetic", "--synthetic-size", "384",
    "--batch-size", "64", "--workers", "0",
]  # fmt: skip


def test_cli_trains_a_tiny_model_on_synthetic_data(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", *TINY, "--epochs", "4", "--token-keep", "0.7", "--attn-keep", "0.5", "--lr", "2e-3",
               "--batch-size", "32", "--mixup", "0", "--cutmix", "0", "--warmup-epochs", "0",
               "--output", str(out)])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokens_per_stage"] == [49, 35, 25, 18]
    assert 0 < metrics["macs_saving"] < 1 and metrics["img_per_s"] > 0
    assert metrics["top1"] > 30  # 10 classes: chance is 10%
    log = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert (out / "log.csv").read_text().startswith("epoch,")
    assert (out / "curves.png").stat().st_size > 1000
    assert "test top-1" in capsys.readouterr().out


def test_resume_continues_where_it_stopped(tmp_path):
    args = [*TINY, "--epochs", "3", "--token-keep", "0.6", "--example-keep", "0.75", "--example-first-update", "1",
            "--example-update-every", "1", "--example-updates", "2", "--mixup", "0.8", "--drop-path", "0.1"]  # fmt: skip
    assert main(["train", *args, "--output", str(tmp_path / "full")]) == 0
    assert main(["train", *args, "--output", str(tmp_path / "cut"), "--stop-after", "1"]) == 0
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert main(["train", *args, "--output", str(tmp_path / "cut")]) == 0

    full = load_checkpoint(tmp_path / "full" / "last.pt")
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in full["model"].items():
        torch.testing.assert_close(cut["model"][k], v, rtol=0, atol=0, msg=k)
    assert torch.equal(full["example_selector"]["active"], cut["example_selector"]["active"])
    strip = lambda h: [{k: v for k, v in r.items() if "time" not in k and "img_per_s" not in k} for r in h]
    assert strip(full["history"]) == strip(cut["history"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "no_such_vit"], "unknown model"),
        (["--token-keep", "1.5"], "token-keep must be in"),
        (["--example-keep", "0"], "example-keep must be in"),
        (["--locations", "3", "9"], "outside the model's blocks"),
        (["--dataset", "does/not/exist"], "does not exist"),
        (["--synthetic-size", "40"], "smaller than one batch"),
        (["--example-keep", "0.8", "--example-first-update", "5"], "past the last epoch"),
    ],
)
def test_bad_input_gives_one_error_line(tmp_path, extra, message):
    cmd = [
        sys.executable,
        "-m",
        "trilevel.cli",
        "train",
        *TINY,
        "--epochs",
        "1",
        "--output",
        str(tmp_path),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_corrupt_checkpoint_is_refused_and_kept(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"not a checkpoint")
    cmd = [sys.executable, "-m", "trilevel.cli", "train", *TINY, "--epochs", "1", "--output", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and proc.stderr.count("\n") == 1
    assert ckpt.read_bytes() == b"not a checkpoint"  # nothing overwritten


def test_trains_on_an_image_folder_tree(tmp_path):
    """ImageNet layout: root/train/<class>/*.png and root/val/<class>/*.png, through timm's transforms."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8)):
        for c, colour in enumerate(((220, 40, 40), (40, 40, 220))):
            folder = tmp_path / "data" / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(colour, 30, (28, 28, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "run"
    rc = main(["train", "--model", "fmnist-tiny", "--dataset", str(tmp_path / "data"), "--epochs", "2",
               "--batch-size", "8", "--workers", "0", "--mixup", "0", "--cutmix", "0", "--output", str(out)])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] is not None and len(json.loads((out / "log.json").read_text())) == 2
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model_spec"]["kwargs"]["num_classes"] == 2 and ckpt["model_spec"]["kwargs"]["in_chans"] == 3
