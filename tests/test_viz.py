"""trilevel viz on a tiny patched model checkpoint and the synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import trilevel
from trilevel import models
from trilevel.checkpoint import save_checkpoint
from trilevel.config import TrainConfig
from trilevel.example_selector import ExampleSelector
from trilevel.viz import kept_pixels, main, most_forgotten, unforgettable

N = 64
SPEC = dict(img_size=28, patch_size=4, embed_dim=32, depth=4, num_heads=2, in_chans=1, num_classes=10)
PNGS = ("forgotten.png", "unforgettable.png", "pruned_patches.png")


def recorded_selector() -> ExampleSelector:
    """Examples 0..9 flip right/wrong (9 once more), 10..19 are always right, the rest unseen."""
    sel = ExampleSelector(N, 1.0, [5])
    idx = torch.arange(20)
    for epoch in range(4):
        ok = torch.cat([torch.full((10,), epoch % 2 == 0), torch.ones(10, dtype=torch.bool)])
        sel.record(idx, ok, torch.linspace(1, 0, 20))  # variance falls with the index
    for ok in (True, False):  # example 9 is forgotten once more
        sel.record(torch.tensor([9]), torch.tensor([ok]), torch.tensor([0.5]))
    return sel


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = models.create("vit_tiny_patch16_224", dict(SPEC))
    trilevel.patch(model, token_keep=0.5, locations=(1, 2), stat_layer=3)
    cfg = TrainConfig(dataset="synthetic", synthetic_size=N, model="vit_tiny_patch16_224", seed=0)
    state = dict(
        config=cfg.to_dict(),
        model_spec={"timm_name": "vit_tiny_patch16_224", "kwargs": dict(SPEC)},
        trilevel={"token_keep": 0.5, "attn_keep": 1.0, "locations": [1, 2], "stat_layer": 3},
        model=model.state_dict(),
    )
    root = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(root / "with.pt", {**state, "example_selector": recorded_selector().state_dict()})
    save_checkpoint(root / "without.pt", {**state, "example_selector": None})
    return root


def assert_png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        a = np.asarray(img.convert("L"))
    assert a.shape[0] > 50 and a.shape[1] > 50 and a.std() > 1  # not a blank canvas
    return a


def test_viz_writes_all_figures(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint / "with.pt"), "--output", str(tmp_path), "--count", "6"]) == 0
    for name in PNGS:
        assert_png(tmp_path / name)
    assert "wrote" in capsys.readouterr().out


def test_viz_without_selector_state_writes_patches_only(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint / "without.pt"), "--output", str(tmp_path)]) == 1
    assert "no example-selector state" in capsys.readouterr().err
    assert_png(tmp_path / "pruned_patches.png")
    assert not (tmp_path / "forgotten.png").exists()


def test_viz_missing_checkpoint(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--output", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_example_picks():
    sel = recorded_selector()
    forgotten = most_forgotten(sel, 16).tolist()
    assert forgotten == [9, *range(9)]  # 9 three times, the rest twice in index order
    assert unforgettable(sel, 4).tolist() == [19, 18, 17, 16]  # lowest attention variance first


def test_kept_pixels():
    idx = torch.tensor([[0, 5], [3, 8]])  # 3 x 3 grid of 4 x 4 patches
    mask = kept_pixels(idx, (3, 3), 12)
    assert mask.shape == (2, 12, 12) and mask.sum(dim=(1, 2)).tolist() == [32, 32]
    assert mask[0, :4, :4].all() and mask[0, 4:8, 8:].all() and not mask[0, 4:8, :8].any()
    assert mask[1, :4, 4:].sum() == 0 and mask[1, 4:8, :4].all() and mask[1, 8:, 8:].all()
