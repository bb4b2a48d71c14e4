"""One whole training step of the tiny Tri-Level ViT on the C-sim engine (forward with caches,
backward, SGD, one start) against the package's golden vectors, bit for bit: every weight
gradient with its run-time format, every updated weight and master copy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tiny_vit
from trilevel_host.device.base import EngineError
from trilevel_host.device.csim import CSimDevice
from trilevel_host.engine.ops import UnsupportedPackage
from trilevel_host.engine.train_program import build_train_program
from trilevel_host.package import load_package
from trilevel_host.reference.model import ReferenceModel
from trilevel_host.runner import InputError
from trilevel_host.trainer import EngineTrainer


@functools.cache
def pkg():
    return load_package(tiny_vit.package())


def trainer(lr: float | None = None) -> EngineTrainer:
    p = pkg()
    return EngineTrainer.from_package(p, CSimDevice(), lr=lr or p.manifest["golden"]["train_step"]["lr"])


def sample(i: int) -> tuple[np.ndarray, int]:
    x, _ = pkg().golden("forward/input")
    labels, _ = pkg().golden("labels")
    return x[i], int(labels[i])


def test_golden_training_step_bit_for_bit():
    t = trainer()
    t.train_step(*sample(0))
    golden = pkg().manifest["golden"]["tensors"]
    grads = [n.removeprefix("train/grad/") for n in golden if n.startswith("train/grad/")]
    assert len(grads) == len(pkg().manifest["weights"]) + 1  # every weight, and the loss gradient
    for key in grads:
        want, f = pkg().golden(f"train/grad/{key}")
        got, f_got = t.gradient(key)
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=key)
        assert f_got == f, key
    for key in pkg().manifest["weights"]:
        want, _ = pkg().golden(f"train/updated/{key}")
        np.testing.assert_array_equal(t.weight(key).reshape(want.shape), want, err_msg=key)
        want, _ = pkg().golden(f"train/master/{key}")
        np.testing.assert_array_equal(t.master(key).reshape(want.shape), want, err_msg=key)


def test_weights_stay_on_the_device_between_samples():
    """Three steps in a row equal three reference steps: the next forward reads the updated weights."""
    t, ref = trainer(0.05), ReferenceModel.from_package(pkg())
    for i in range(3):
        x, label = sample(i)
        t.train_step(x, label)
        _, grads = ref.train_step(x[None].astype(np.int64), np.array([label]), 0.05)
    for key in pkg().manifest["weights"]:
        np.testing.assert_array_equal(t.weight(key).reshape(-1), ref.w[key].reshape(-1), err_msg=key)
        np.testing.assert_array_equal(t.master(key).reshape(-1), ref.master[key].reshape(-1), err_msg=key)
        g, f = t.gradient(key)
        np.testing.assert_array_equal(g.reshape(-1), grads[key][0].reshape(-1), err_msg=key)
        assert f == grads[key][1]


def test_bad_label_is_refused_and_the_weights_stay():
    t = trainer()
    x, _ = sample(0)
    with pytest.raises(InputError, match="label"):
        t.train_step(x, 10)
    t.write("input", x.reshape(x.shape[0] * x.shape[1], -1))  # past the host's check: the engine's own
    t.write("label", np.array([[12]]))
    with pytest.raises(EngineError, match="BAD_INDEX.*CE_GRAD"):
        t.run("train")
    for key in pkg().manifest["weights"]:
        np.testing.assert_array_equal(t.weight(key).reshape(-1), pkg().tensor(key).reshape(-1), err_msg=key)


def test_learning_rate_outside_the_engine_range_is_refused():
    with pytest.raises(UnsupportedPackage, match="learning rate"):
        build_train_program(pkg(), lr=-0.1)
