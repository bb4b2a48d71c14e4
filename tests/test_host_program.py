"""The engine program of a package: arena layout, descriptor fields, and the packages it refuses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tiny_vit
from trilevel_host import load_package
from trilevel_host.engine.abi import abi
from trilevel_host.engine.ops import UnsupportedPackage, ln_eps
from trilevel_host.engine.program import build_program
from trilevel_host.package import Package, PackageError
from trilevel_host.reference.model import ModelConfig


@pytest.fixture(scope="module")
def pkg():
    return load_package(tiny_vit.package())


@pytest.fixture(scope="module")
def prog(pkg):
    return build_program(pkg)


def _field(op, name):
    """A descriptor field as the engine reads it (shifts signed)."""
    v = int(op.descriptor(0)[abi()["desc_words"][name]])
    return v - (1 << 32) if name.startswith("SH") and v >= 1 << 31 else v


def _with_manifest(pkg, edit) -> Package:
    m = copy.deepcopy(pkg.manifest)
    edit(m)
    p = Package(pkg.root, m)
    p._cache = dict(pkg._cache)
    return p


def test_descriptor_lists_follow_the_model(prog):
    cfg = prog.cfg
    assert [op.kind for op in prog.setup] == ["LOAD_LUT"] * 5
    # embedding 4, per block 10, per selector SELECT + GATHER, head 2
    assert len(prog.forward) == 4 + 10 * cfg.depth + 2 * len(cfg.locations) + 2
    kinds = [op.kind for op in prog.forward]
    assert kinds[:4] == ["PATCHIFY", "LINEAR", "ADD", "ADD"] and kinds[-2:] == ["LAYERNORM", "LINEAR"]
    block1 = [op.kind for op in prog.forward if op.name.startswith("blocks.1.")]
    assert block1 == ["LAYERNORM", "LINEAR", "ATTENTION", "LINEAR", "ADD", "SELECT", "GATHER",
                      "LAYERNORM", "LINEAR", "GELU", "LINEAR", "ADD"]  # fmt: skip
    # tags number both lists from 1, and name the op back
    ops_ = prog.setup + prog.forward
    for tag, op in enumerate(ops_, start=1):
        assert prog.op_for_tag(tag) is op
    assert prog.op_for_tag(0) is None and prog.op_for_tag(len(ops_) + 1) is None


def test_descriptor_bytes_in_the_arena_are_the_ops(prog):
    tag = 1
    for which, op_list in (("setup", prog.setup), ("forward", prog.forward)):
        addr, n = prog.program(which)
        assert n == len(op_list)
        words = prog.image[addr : addr + n * abi()["abi"]["DESC_BYTES"]].view("<u4").reshape(n, -1)
        expect = np.stack([op.descriptor(tag + k) for k, op in enumerate(op_list)])
        np.testing.assert_array_equal(words, expect)
        tag += n


def test_selectors_and_sparse_attention_flags(prog):
    by_name = {op.name: op for op in prog.forward}
    cfg = prog.cfg
    assert cfg.locations == (1, 2)
    assert by_name["blocks.0.attn"].flags == () and by_name["blocks.1.attn"].flags == ("MAP",)
    assert by_name["blocks.2.attn"].flags == ("SPARSE", "MAP") and by_name["blocks.3.attn"].flags == (
        "SPARSE",
    )
    (k1, c1), (k2, c2) = cfg.stage_plan()
    s1, s2 = by_name["blocks.1.select"], by_name["blocks.2.select"]
    assert s1.flags == () and s2.flags == ("ORIGIN",)
    assert (_field(s1, "P2"), _field(s1, "P3"), _field(s2, "P2"), _field(s2, "P3")) == (k1, c1, k2, c2)
    t = prog.arena.tensors
    assert _field(s1, "Y") == t["blocks.1.keep_idx"].addr  # first selector: slots are original ids
    assert (
        _field(s2, "AUX1") == t["blocks.1.keep_idx"].addr
        and _field(s2, "AUX2") == t["blocks.2.keep_idx"].addr
    )
    assert _field(by_name["blocks.2.attn"], "AUX0") == t["blocks.1.connections"].addr
    assert _field(by_name["blocks.3.attn"], "AUX0") == t["blocks.2.connections"].addr
    assert _field(by_name["blocks.3.attn"], "P2") == c2 and _field(by_name["blocks.3.attn"], "M") == 1 + k2
    g = by_name["blocks.2.gather"]
    assert (
        _field(g, "AUX0") == t["blocks.2.select.slots"].addr
        and _field(g, "Y") == t["blocks.2.resid1.kept"].addr
    )


def test_shifts_are_the_format_differences(pkg, prog):
    w = {k: v["frac_bits"] for k, v in pkg.manifest["weights"].items()}
    a = {k: v["frac_bits"] for k, v in pkg.manifest["activations"].items()}
    by_name = {op.name: op for op in prog.forward}
    fc1 = by_name["blocks.3.mlp.fc1"]
    fx, fw = a["blocks.3.norm2.out"], w["blocks.3.mlp.fc1.weight"]
    assert _field(fc1, "SH0") == w["blocks.3.mlp.fc1.bias"] - (fx + fw)
    assert _field(fc1, "SH1") == fx + fw - a["blocks.3.mlp.fc1.out"]
    add = by_name["blocks.0.resid1"]
    fa, fb = a["embed.out"], a["blocks.0.attn.proj.out"]
    f = max(fa, fb)
    assert (_field(add, "SH0"), _field(add, "SH1"), _field(add, "SH2")) == (
        fa - f,
        fb - f,
        f - a["blocks.0.resid1.out"],
    )
    ln = by_name["blocks.2.norm2"]
    fg = w["blocks.2.norm2.weight"]
    assert _field(ln, "SH0") == w["blocks.2.norm2.bias"] - (14 + fg)
    assert _field(ln, "SH1") == 14 + fg - a["blocks.2.norm2.out"]
    eps = _field(ln, "E0") | (_field(ln, "E1") << 32)
    fx = a["blocks.2.resid1.out"]
    assert eps == ln_eps(1e-6, fx) == max(1, int(np.floor(1e-6 * 2.0 ** (2 * (fx + 8)) + 0.5)))
    at = by_name["blocks.1.attn"]
    fq = a["blocks.1.attn.qkv.out"]
    assert _field(at, "SH0") == 2 * fq + 2 - 14  # head_dim 16: scale 2^-2
    assert _field(at, "SH1") == 15 + fq - a["blocks.1.attn.ctx"]
    gelu = by_name["blocks.0.mlp.act"]
    fx, fy = a["blocks.0.mlp.fc1.out"], a["blocks.0.mlp.act.out"]
    assert (_field(gelu, "SH0"), _field(gelu, "SH1"), _field(gelu, "SH2")) == (fx - 14, 16 - fy, fx - fy)
    head_ln = by_name["norm"]
    assert _field(head_ln, "M") == 1 and _field(head_ln, "X") == prog.arena.tensors["blocks.3.out"].addr


def test_arena_holds_weights_tables_and_a_tensor_per_golden_vector(pkg, prog):
    ar, C = prog.arena, prog.cfg.embed_dim
    np.testing.assert_array_equal(ar.read("blocks.0.attn.qkv.weight"), pkg.tensor("blocks.0.attn.qkv.weight"))
    np.testing.assert_array_equal(
        ar.read("patch_embed.proj.weight"), pkg.tensor("patch_embed.proj.weight").reshape(C, -1)
    )
    np.testing.assert_array_equal(ar.read("pos_embed"), pkg.tensor("pos_embed")[0])
    np.testing.assert_array_equal(ar.read("blocks.1.mlp.fc2.bias"), pkg.tensor("blocks.1.mlp.fc2.bias")[None])
    np.testing.assert_array_equal(ar.read("lut.rsqrt")[0], pkg.lut("rsqrt"))
    for name, entry in pkg.manifest["golden"]["tensors"].items():
        if not name.startswith("forward/"):
            continue
        t = ar.tensors[name.removeprefix("forward/")]
        assert t.rows * t.cols == np.prod(entry["shape"][1:]), name
    assert np.count_nonzero(ar.read("head.out")) == 0  # activations start zeroed


def test_building_is_deterministic(pkg, prog):
    np.testing.assert_array_equal(build_program(pkg).image, prog.image)


def _set(path, value):
    def edit(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


def _both(e1, e2):
    return lambda m: (e1(m), e2(m))


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set(("model", "img_size"), 448), "tokens = 4097 is over the engine's MAX_TOKENS = 197"),
        (
            _both(_set(("model", "img_size"), 256), _set(("model", "patch_size"), 32)),
            "img_size = 256 is over",
        ),
        (_set(("model", "embed_dim"), 512), "embed_dim = 512 is over the engine's MAX_DIM"),
        (_set(("model", "num_heads"), 4), "head_dim 8 is not a power of 4"),
        (_set(("model", "num_prefix_tokens"), 0), "num_prefix_tokens must be 1"),
        (
            _set(("model", "ln_eps"), 1e6),
            r"blocks.0.norm1: eps 1000000.0 at input format \d+ is 2\^\d+, over the engine's 2\^52",
        ),
        (_set(("luts", "exp", "step_bits"), 6), "table exp: step_bits = 6 but the engine's is 7"),
        (_set(("activations", "blocks.2.mlp.fc1.out", "frac_bits"), -40), "blocks.2.mlp.fc1: shift SH1 = "),
    ],
)
def test_packages_the_engine_cannot_run_are_refused(pkg, edit, message):
    with pytest.raises(UnsupportedPackage, match=message) as e:
        build_program(_with_manifest(pkg, edit))
    assert isinstance(e.value, PackageError) and "\n" not in str(e.value)


def test_tables_other_than_the_engines_are_refused(pkg):
    p = _with_manifest(pkg, lambda m: None)
    knots = pkg.lut("gelu").copy()
    knots[100] += 1
    p._cache[pkg.manifest["luts"]["gelu"]["file"]] = knots
    with pytest.raises(UnsupportedPackage, match="table gelu: its knots differ"):
        build_program(p)


def test_stage_plan_matches_the_manifest(pkg, prog):
    cfg = ModelConfig.from_manifest(pkg.manifest)
    tokens = [n for n, _ in cfg.stage_plan()]
    assert [cfg.num_patches, *tokens] == pkg.manifest["selector"]["tokens_per_stage"]
    for i, n in zip(cfg.locations, tokens, strict=True):
        assert prog.arena.tensors[f"blocks.{i}.keep_idx"].cols == n
