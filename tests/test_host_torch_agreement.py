"""The C-sim engine, driven by the host, against the float PyTorch model on Fashion-MNIST test images.

The host side is numpy only (its own idx reader and quantisation); torch runs the float model.
"""

from __future__ import annotations

import numpy as np
import tiny_vit
import torch
from engine_harness import engine
from trilevel_host import load_package
from trilevel_host.data import load_idx_split, quantize_images
from trilevel_host.device.csim import CSimDevice
from trilevel_host.runner import EngineRunner

from model_export.data import load_split, normalize
from trilevel.checkpoint import load_model

N_IMAGES = 500


def test_top1_agrees_with_pytorch_on_500_test_images():
    model, _, _ = load_model(tiny_vit.checkpoint())
    te = load_split("test")
    with torch.no_grad():
        float_pred = model(normalize(te.images[:N_IMAGES], te.mean, te.std)).argmax(1).numpy()
    pkg = load_package(tiny_vit.package())
    runner = EngineRunner.from_package(pkg, CSimDevice(engine()))
    images, labels = load_idx_split("fashion-mnist", "test")
    xq = quantize_images(images[:N_IMAGES], pkg.manifest)
    engine_pred = np.array([np.argmax(runner.infer(x).logits) for x in xq])
    agreement = (engine_pred == float_pred).mean()
    assert agreement >= 0.99, agreement
    # the engine is a classifier, not a constant: it is right far above chance (10 classes)
    assert (engine_pred == labels[:N_IMAGES]).mean() > 0.5
