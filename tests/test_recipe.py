"""The training recipe does what its flags say: presets, LR schedule, MACs accounting, statistics, resume."""

import argparse

import pytest
import timm

from model_export.arch import UnsupportedModel, describe
from trilevel import example_selector
from trilevel.cli import add_train_args, parse_train
from trilevel.config import TrainConfig
from trilevel.train import run


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model="fmnist-tiny", dataset="synthetic", synthetic_size=200, batch_size=32, workers=0, epochs=2,
        mixup=0.0, cutmix=0.0, output=str(tmp_path / "run"),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_a_preset_sets_defaults_that_explicit_flags_override():
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parse_train(parser, ["--preset", "trilevel-0.7", "--token-keep", "0.5", "--attn-keep", "1.0"])
    assert (args.token_keep, args.attn_keep, args.example_keep) == (0.5, 1.0, 0.7)
    args = parse_train(parser, ["--preset", "trilevel-0.7"])
    assert (args.token_keep, args.attn_keep, args.example_keep) == (0.7, 0.3, 0.7)
    cfg = TrainConfig.from_preset("trilevel-0.8", attn_keep=1.0)
    assert (cfg.token_keep, cfg.attn_keep, cfg.example_keep) == (0.8, 1.0, 0.8)
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="trilevel-0.1").validate()


def test_two_phase_ablation_lr_reaches_its_minimum(tmp_path):
    # 4 epochs: the whole set (6 steps) before the update at epoch 1, half of it (3 steps) after.
    cfg = tiny(tmp_path, epochs=4, example_method="forgetting", example_keep=0.5, example_updates=1,
               example_first_update=1, min_lr=1e-5, warmup_epochs=0.0)  # fmt: skip
    run(cfg)
    from trilevel.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 6 + 3 * 3
    assert ckpt["history"][-1]["lr"] == pytest.approx(1e-5, rel=1e-9)
    assert ckpt["history"][-2]["lr"] > 1e-5


def test_dense_run_saves_no_training_macs(tmp_path):
    # 200 images in batches of 32 drop 8 per epoch; --max-steps-per-epoch drops more.
    m = run(tiny(tmp_path, max_steps_per_epoch=3))
    assert m["train_macs_saving"] == 0.0
    m = run(tiny(tmp_path, output=str(tmp_path / "r2"), epochs=1))
    assert m["train_macs_saving"] == 0.0


def test_example_statistics_are_gathered_only_when_read(tmp_path, monkeypatch):
    calls = []
    record = example_selector.ExampleSelector.record
    monkeypatch.setattr(
        example_selector.ExampleSelector, "record", lambda self, *a: calls.append(1) or record(self, *a)
    )
    run(tiny(tmp_path, epochs=2, example_keep=0.5, example_method="random", example_updates=1,
             example_first_update=1))  # fmt: skip
    assert calls == []
    # One update before epoch 1: statistics of epoch 0 only (3 steps of 100 examples).
    run(tiny(tmp_path, output=str(tmp_path / "r2"), epochs=2, example_keep=0.5, example_updates=1,
             example_first_update=1))  # fmt: skip
    assert len(calls) == 3


def test_resume_refuses_a_change_of_compile(tmp_path):
    run(tiny(tmp_path, token_keep=0.7), stop_after=1)
    with pytest.raises(ValueError, match="compile"):
        run(tiny(tmp_path, token_keep=0.7, compile=True))


def test_export_refuses_a_vit_without_qkv_bias():
    model = timm.create_model("vit_tiny_patch16_224", img_size=28, patch_size=7, in_chans=1, num_classes=10,
                              embed_dim=32, depth=1, num_heads=2, qkv_bias=False)  # fmt: skip
    with pytest.raises(UnsupportedModel, match="attn.qkv has no bias"):
        describe(model)


def test_an_image_folder_model_exports_onnx_alone(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from model_export.cli import main as export_main

    rng = np.random.default_rng(0)
    for c, colour in enumerate(((220, 40, 40), (40, 40, 220))):
        folder = tmp_path / "data" / f"class_{c}"  # no train/ or val/: the root is the training set
        folder.mkdir(parents=True)
        for i in range(16):
            Image.fromarray(np.clip(rng.normal(colour, 30, (28, 28, 3)), 0, 255).astype(np.uint8)).save(
                folder / f"{i}.png"
            )
    run(tiny(tmp_path, dataset=str(tmp_path / "data"), epochs=1, batch_size=8))
    ckpt = str(tmp_path / "run" / "last.pt")
    assert export_main(["--checkpoint", ckpt, "--output", str(tmp_path / "pkg")]) == 2
    assert "--onnx-only" in capsys.readouterr().err
    assert export_main(["--checkpoint", ckpt, "--output", str(tmp_path / "m.onnx"), "--onnx-only"]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 1000 and "wrote" in capsys.readouterr().out


def test_import_graph_has_no_circle():
    """Every import between the project's modules, function-level ones included; a module run
    as a script (under ``if __name__ == "__main__"``) is not an import."""
    import ast
    from pathlib import Path

    import networkx as nx

    root = Path(__file__).resolve().parents[1]
    graph = nx.DiGraph()
    for package in ("trilevel", "model_export"):
        for file in (root / package).glob("*.py"):
            name = f"{package}.{file.stem}"
            tree = ast.parse(file.read_text())
            body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
            for node in (n for top in body for n in ast.walk(top)):
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        base = f"{package}.{base}" if base else package
                    targets = [base] + [f"{base}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    continue
                for t in targets:
                    if (
                        t.split(".")[0] in ("trilevel", "model_export")
                        and (root / (t.replace(".", "/") + ".py")).exists()
                    ):
                        graph.add_edge(name, t)
    assert "trilevel.train" not in nx.descendants(graph, "model_export.cli")
    assert "trilevel.train" not in nx.descendants(graph, "trilevel.viz")
    assert list(nx.simple_cycles(graph)) == []


def test_every_train_option_explains_itself():
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and not action.help.startswith("(default"), action.dest


def test_bench_runs_are_the_presets():
    import importlib.util
    from pathlib import Path

    from trilevel.config import PRESETS

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_training.py"
    spec = importlib.util.spec_from_file_location("gpu_training", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert set(bench.RUNS) == set(PRESETS) and all(name.split(":")[0] in PRESETS for name in bench.DEFAULT)


def test_ema_weights_are_evaluated_saved_and_the_best_kept(tmp_path, monkeypatch, capsys):
    import torch

    from trilevel.checkpoint import load_checkpoint
    from trilevel.cli import main

    clips = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, v: clips.append(v) or clip(p, v))
    run(tiny(tmp_path, epochs=3, model_ema=True, model_ema_decay=0.5, clip_grad=1.0, lr=2e-3))
    assert clips == [1.0] * 18  # 3 epochs of 6 steps
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    rows = last["history"]
    assert all(r["top1_ema"] is not None for r in rows)
    assert any(not torch.equal(last["model_ema"][k], v) for k, v in last["model"].items())
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    scores = [r["top1_ema"] for r in rows]
    assert best["epoch"] == 1 + scores.index(max(scores))

    ckpt = str(tmp_path / "run" / "last.pt")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", ckpt, "--ema"]) == 0
    assert f"top-1 {rows[-1]['top1_ema']:.2f}%" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", ckpt]) == 0
    assert f"top-1 {rows[-1]['top1']:.2f}%" in capsys.readouterr().out

    # Fine-tuning starts from the checkpoint's weights: one step at a tiny LR barely moves them.
    run(tiny(tmp_path, output=str(tmp_path / "ft"), epochs=1, max_steps_per_epoch=1, lr=1e-9,
             warmup_epochs=0.0, initial_checkpoint=ckpt))  # fmt: skip
    tuned = load_checkpoint(tmp_path / "ft" / "last.pt")["model"]
    for k, v in last["model"].items():
        torch.testing.assert_close(tuned[k], v, rtol=0, atol=1e-6, msg=k)


def test_tensorboard_scalars_when_tensorboard_is_installed(tmp_path, monkeypatch):
    """tensorboard is optional: with a stand-in SummaryWriter the epoch rows arrive as scalars;
    without the package (``None`` in sys.modules makes the import fail) training still runs."""
    import sys
    import types

    scalars = []

    class Writer:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, name, value, step):
            scalars.append((name, step))

        def flush(self):
            pass

        def close(self):
            scalars.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    run(tiny(tmp_path, epochs=2, max_steps_per_epoch=1))
    assert ("train_loss", 1) in scalars and ("top1", 2) in scalars and scalars[-1] == ("closed", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    run(tiny(tmp_path, output=str(tmp_path / "r2"), epochs=1, max_steps_per_epoch=1))
