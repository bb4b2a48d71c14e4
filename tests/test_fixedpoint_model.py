"""The whole fixed-point forward: agreement with the float model, golden vectors, op-by-op use."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tiny_vit
import torch
from trilevel_host import load_package
from trilevel_host.reference import ReferenceModel
from trilevel_host.reference import ops_forward as F

from model_export.data import load_split, normalize
from trilevel.checkpoint import load_model

N_TEST = 1000


@functools.cache
def _run():
    model, _, _ = load_model(tiny_vit.checkpoint())
    te = load_split("test")
    x = normalize(te.images[:N_TEST], te.mean, te.std)
    model.trilevel.record = True
    with torch.no_grad():
        logits = model(x).numpy()
    ref = ReferenceModel.from_package(load_package(tiny_vit.package()))
    fwd = ref.forward(ref.quantize_input(x.numpy()))
    torch_idx = [t.numpy() for t in model.trilevel.last_keep_idx]
    return logits, ref, fwd, torch_idx, te.labels[:N_TEST].numpy()


def test_top1_agrees_with_float_model():
    logits, ref, fwd, _, labels = _run()
    fixed = ref.logits_float(fwd)
    assert (fixed.argmax(1) == logits.argmax(1)).mean() >= 0.99
    acc_float = (logits.argmax(1) == labels).mean()
    acc_fixed = (fixed.argmax(1) == labels).mean()
    assert abs(acc_float - acc_fixed) <= 0.005
    assert acc_float > 0.6  # the tiny model did learn something, or agreement would be trivial
    assert np.median(np.abs(fixed - logits)) < 0.01


def test_kept_tokens_agree_with_pytorch_at_every_selector():
    _, _, fwd, torch_idx, _ = _run()
    assert len(fwd.keep_idx) == len(torch_idx) == 2
    for ours, theirs in zip(fwd.keep_idx, torch_idx, strict=True):
        assert ours.shape == theirs.shape
        assert (ours == theirs).all(1).mean() >= 0.99


def test_golden_forward_is_reproduced_bit_for_bit():
    pkg = load_package(tiny_vit.package())
    ref = ReferenceModel.from_package(pkg)
    x, _ = pkg.golden("forward/input")
    fwd = ref.forward(x.astype(np.int64), trace=True)
    names = [
        n.removeprefix("forward/") for n in pkg.manifest["golden"]["tensors"] if n.startswith("forward/")
    ]
    assert "blocks.1.keep_idx" in names and "blocks.2.connections" in names and "head.out" in names
    for name in names:
        want, frac = pkg.golden("forward/" + name)
        np.testing.assert_array_equal(fwd.trace[name], want, err_msg=name)
        if frac is not None:
            assert frac == ref.afmt[name]


def test_ops_are_callable_one_by_one_on_golden_tensors():
    """Block 0 rebuilt from the ops and the package, starting from the golden embedding."""
    pkg = load_package(tiny_vit.package())
    ref = ReferenceModel.from_package(pkg)
    a, w, wf = ref.afmt, ref.w, ref.wfmt
    h, fh = pkg.golden("forward/embed.out")
    n1, _ = F.layernorm(
        h.astype(np.int64),
        fh,
        w["blocks.0.norm1.weight"],
        wf["blocks.0.norm1.weight"],
        w["blocks.0.norm1.bias"],
        wf["blocks.0.norm1.bias"],
        a["blocks.0.norm1.out"],
        1e-6,
    )
    np.testing.assert_array_equal(n1, pkg.golden("forward/blocks.0.norm1.out")[0])
    qkv = F.linear(
        n1,
        a["blocks.0.norm1.out"],
        w["blocks.0.attn.qkv.weight"],
        wf["blocks.0.attn.qkv.weight"],
        w["blocks.0.attn.qkv.bias"],
        wf["blocks.0.attn.qkv.bias"],
        a["blocks.0.attn.qkv.out"],
    )
    np.testing.assert_array_equal(qkv, pkg.golden("forward/blocks.0.attn.qkv.out")[0])
    ctx, _, _ = F.attention(qkv, a["blocks.0.attn.qkv.out"], 2, a["blocks.0.attn.ctx"])
    np.testing.assert_array_equal(ctx, pkg.golden("forward/blocks.0.attn.ctx")[0])


def test_saturation_is_reported_per_tensor():
    _, _, fwd, _, _ = _run()
    counts = fwd.stats.as_dict()
    assert "blocks.0.mlp.fc1.out" in counts and counts["blocks.0.mlp.fc1.out"]["total"] == N_TEST * 17 * 64
    assert all(v["saturated"] <= 1e-3 * v["total"] for v in counts.values())


@pytest.mark.parametrize("keep", [1.0])
def test_keep_ratio_one_is_the_dense_model(keep, tmp_path):
    """With both ratios at 1.0 no token is dropped: the reference has no selector effect."""
    from model_export import arch
    from model_export.calibrate import activation_formats, calibrate
    from model_export.package_writer import model_config, quantize_weights

    model, _, _ = load_model(tiny_vit.checkpoint())
    model.trilevel.token_keep = keep
    model.trilevel.attn_keep = keep
    te = load_split("test")
    x = normalize(te.images[:200], te.mean, te.std)
    qw, wfmt, _ = quantize_weights(model)
    ref = ReferenceModel(
        model_config(arch.describe(model), model), qw, wfmt, activation_formats(calibrate(model, x))
    )
    fwd = ref.forward(ref.quantize_input(x.numpy()))
    assert all((idx == np.arange(16)).all() for idx in fwd.keep_idx)
    assert all(c is None for c in fwd.connections)
    with torch.no_grad():
        assert (ref.logits_float(fwd).argmax(1) == model(x).numpy().argmax(1)).mean() >= 0.99
