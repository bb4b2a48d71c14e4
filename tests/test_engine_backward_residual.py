"""C-sim OP_GRAD_ADD, OP_SCATTER and OP_GRAD_REQUANT against reference ops_backward
(add_grads, scatter_tokens, requant_dynamic): the residual fork, the gather's backward and
the embedding gradients."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, format_table, garbage, grad, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B


def run_add(a, fa, b, fb, in_place=False, **over):
    M, N = a.shape
    p = Program(with_luts=False)
    fmt = format_table(p, {10: fa, 11: fb})
    ta, tb = p.tensor("a", a), p.tensor("b", b)
    ty = ta if in_place else p.tensor("y", garbage(M, N))
    fields = dict(X=ta.addr, W=tb.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, XS=ta.stride, WS=tb.stride,
                  YS=ty.stride, P3=slots(10, 11, 12))  # fmt: skip
    fields.update(over)
    p.op("GRAD_ADD", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N", [(1, 8), (7, 32), (17, 100), (197, 64), (5, 384)])
@pytest.mark.parametrize("fa,fb", [(12, 12), (20, 9), (-16, 40), (3, 40), (40, -16), (30, 31)])
def test_add_matches_reference(M, N, fa, fb):
    rng = np.random.default_rng(M * N + fa * 3 + fb)
    a, b = grad(rng, (M, N)), grad(rng, (M, N), 9)
    p, r = run_add(a, fa, b, fb)
    assert r.ok, r.status_name
    y, fy = B.add_grads(a, fa, b, fb)
    np.testing.assert_array_equal(p.read("y"), y)
    assert p.read("fmt")[0, 12] == fy


def test_add_in_place_and_saturating():
    """Both at f = -16 and at full scale: the sum needs f = -17, clamped to -16, so it saturates."""
    a = np.full((3, 16), 32767, np.int64)
    p, r = run_add(a, -16, a, -16, in_place=True)
    assert r.ok
    y, fy = B.add_grads(a, -16, a, -16)
    assert fy == -16 and (y == 32767).all()
    np.testing.assert_array_equal(p.read("a"), y)


def test_add_of_zeros_gives_frac_max():
    z = np.zeros((2, 8), np.int64)
    p, r = run_add(z, 5, z, 9)
    assert r.ok and (p.read("y") == 0).all() and p.read("fmt")[0, 12] == 40


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(N=config()["MAX_DIM"] + 1), "BAD_SIZE"),
        (dict(W=1 << 26), "BAD_ADDRESS"),
        (dict(P3=slots(10, 13, 12)), "BAD_PARAM"),
    ],
)
def test_add_errors_write_nothing(over, status):
    rng = np.random.default_rng(0)
    p, r = run_add(grad(rng, (3, 16)), 4, grad(rng, (3, 16)), 5, **over)
    assert r.status_name == status and (p.read("y") == GARBAGE).all()


def run_scatter(kept, idx, n_patches, prefix=1, **over):
    K = kept.shape[1]
    p = Program(with_luts=False)
    tx = p.tensor("kept", kept)
    ti = p.tensor("idx", np.asarray(idx).reshape(1, -1), dtype=np.int32)
    ty = p.tensor("y", garbage(prefix + n_patches, K))
    fields = dict(X=tx.addr, AUX0=ti.addr, Y=ty.addr, M=n_patches, N=len(idx), K=K, XS=tx.stride, YS=ty.stride,
                  P1=prefix)  # fmt: skip
    fields.update(over)
    p.op("SCATTER", **fields)
    return p, p.run()


@pytest.mark.parametrize(
    "n_patches,n_keep,K", [(16, 12, 32), (49, 35, 64), (196, 138, 384), (5, 5, 8), (9, 1, 24)]
)
def test_scatter_matches_reference(n_patches, n_keep, K):
    rng = np.random.default_rng(n_patches + n_keep)
    idx = np.sort(rng.choice(n_patches, n_keep, replace=False))
    kept = grad(rng, (1 + n_keep, K))
    p, r = run_scatter(kept, idx, n_patches)
    assert r.ok, r.status_name
    np.testing.assert_array_equal(p.read("y"), B.scatter_tokens(kept[None], idx[None], 1, n_patches)[0])


@pytest.mark.parametrize("idx", [[0, 3, 3], [0, 4, 2], [1, 2, 9], [-1, 2, 3]])
def test_scatter_bad_indices_write_nothing(idx):
    p, r = run_scatter(grad(np.random.default_rng(1), (4, 16)), idx, 9)
    assert r.status_name == "BAD_INDEX" and (p.read("y") == GARBAGE).all()


@pytest.mark.parametrize("over", [dict(N=10), dict(P1=2), dict(Y=1 << 26)])
def test_scatter_bad_descriptor_writes_nothing(over):
    p, r = run_scatter(grad(np.random.default_rng(1), (4, 16)), [1, 4, 6], 9, **over)
    assert r.status_name in ("BAD_SIZE", "BAD_ADDRESS") and (p.read("y") == GARBAGE).all()


def run_requant(g, fg, **over):
    M, N = g.shape
    p = Program(with_luts=False)
    fmt = format_table(p, {0: fg})
    tx, ty = p.tensor("g", g), p.tensor("y", garbage(M, N))
    fields = dict(X=tx.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, XS=tx.stride, YS=ty.stride, P3=slots(0, 1))
    fields.update(over)
    p.op("GRAD_REQUANT", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N", [(1, 32), (17, 32), (197, 192)])
@pytest.mark.parametrize("bits,fg", [(15, 10), (3, 10), (8, 38), (15, -16), (1, 40)])
def test_requant_matches_reference(M, N, bits, fg):
    g = grad(np.random.default_rng(M + N + bits), (M, N), bits)
    p, r = run_requant(g, fg)
    assert r.ok
    y, fy = B.requant_dynamic(g, fg)
    np.testing.assert_array_equal(p.read("y"), y)
    assert p.read("fmt")[0, 1] == fy


def test_requant_bad_format_is_refused():
    p, r = run_requant(np.ones((2, 8), np.int64), 41)
    assert r.status_name == "BAD_PARAM" and (p.read("y") == GARBAGE).all()
