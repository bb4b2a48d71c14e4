"""A whole forward on the C-sim engine equals the package's golden vectors, every layer, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_vit
from engine_harness import engine
from trilevel_host import load_package
from trilevel_host.device.csim import CSimDevice
from trilevel_host.reference import ReferenceModel
from trilevel_host.runner import EngineRunner, InputError


@pytest.fixture(scope="module")
def pkg():
    return load_package(tiny_vit.package())


@pytest.fixture(scope="module")
def runner(pkg):
    return EngineRunner.from_package(pkg, CSimDevice(engine()))


def _golden_names(pkg):
    return [n.removeprefix("forward/") for n in pkg.manifest["golden"]["tensors"] if n.startswith("forward/")]


def test_every_layer_output_equals_the_golden_vectors(pkg, runner):
    names = _golden_names(pkg)
    assert {"head.out", "blocks.1.keep_idx", "blocks.2.connections", "blocks.3.attn.ctx"} <= set(names)
    for s in range(pkg.manifest["golden"]["samples"]):  # one after the other: nothing leaks between samples
        out = runner.infer(pkg.golden("forward/input")[0][s])
        for name in names:
            want = pkg.golden(f"forward/{name}")[0][s]
            got = runner.read(name)
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"sample {s}: {name}")
        np.testing.assert_array_equal(out.logits, pkg.golden("forward/head.out")[0][s])
        for i, k, c in zip(runner.program.cfg.locations, out.keep_idx, out.connections, strict=True):
            np.testing.assert_array_equal(k, pkg.golden(f"forward/blocks.{i}.keep_idx")[0][s])
            np.testing.assert_array_equal(c, pkg.golden(f"forward/blocks.{i}.connections")[0][s])


def test_fresh_images_equal_the_reference(pkg, runner):
    """Beyond the golden samples: random images, including saturating ones."""
    ref = ReferenceModel.from_package(pkg)
    m = pkg.manifest["model"]
    rng = np.random.default_rng(1)
    x = rng.integers(-32768, 32768, (4, m["in_chans"], m["img_size"], m["img_size"]))
    x[0] = x[0] // 64  # a less extreme one
    fwd = ref.forward(x, trace=True)
    for b in range(len(x)):
        out = runner.infer(x[b])
        np.testing.assert_array_equal(out.logits, fwd.logits[b])
        np.testing.assert_array_equal(
            runner.read("blocks.2.mlp.act.out"), fwd.trace["blocks.2.mlp.act.out"][b]
        )
        for k, rk in zip(out.keep_idx, fwd.keep_idx, strict=True):
            np.testing.assert_array_equal(k, rk[b])


def test_images_the_model_cannot_take_are_refused(runner):
    m = runner.program.cfg
    with pytest.raises(InputError, match=r"image of shape \(1, 32, 32\): the model takes \(1, 28, 28\)"):
        runner.infer(np.zeros((1, 32, 32), np.int16))
    with pytest.raises(InputError, match="int16 values"):
        runner.infer(np.full((m.in_chans, m.img_size, m.img_size), 0.5))
