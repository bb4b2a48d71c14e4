"""The ONNX model is the sparse model, and onnxruntime matches PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import tiny_vit
import torch
from trilevel_host import load_package
from trilevel_host.reference.ops_forward import topk_ascending

from model_export.data import load_split, normalize
from model_export.onnx_export import run_onnx
from trilevel.checkpoint import load_model
from trilevel.patch import unpatch
from trilevel.selection import topk_indices


def test_graph_has_opset_17_or_newer_and_the_selector_ops():
    pkg = load_package(tiny_vit.package())
    g = onnx.load(str(pkg.path("model.onnx")))
    opset = max(o.version for o in g.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17 and pkg.manifest["onnx"]["opset"] == opset
    ops = {n.op_type for n in g.graph.node}
    assert {"TopK", "GatherElements"} <= ops
    assert pkg.manifest["onnx"]["max_abs_diff_vs_torch"] < 1e-4


def test_onnxruntime_matches_pytorch_and_not_the_dense_model():
    model, _, _ = load_model(tiny_vit.checkpoint())
    te = load_split("test")
    x = normalize(te.images[:512], te.mean, te.std)
    got = run_onnx(load_package(tiny_vit.package()).path("model.onnx"), x.numpy())
    with torch.no_grad():
        sparse = model(x).numpy()
        dense = unpatch(model)(x).numpy()
    assert np.abs(got - sparse).max() < 1e-4
    assert np.abs(got - dense).max() > 1e-2  # the selector really runs in the graph


def test_tie_rule_of_the_float_model_is_the_references_and_onnxs():
    """Lower index first on ties: the selector's rule is the reference's (and ONNX TopK's)."""
    scores = torch.randint(0, 4, (50, 7, 20))  # many exact ties, as masked attention rows have
    np.testing.assert_array_equal(topk_indices(scores.float(), 6).numpy(), topk_ascending(scores.numpy(), 6))
